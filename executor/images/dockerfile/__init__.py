"""`dockyard image build DIR`: Dockerfiles to OCI images, with a layer cache (docs/images.md).

    from executor.images.dockerfile import BuildOptions, build
    result = build(BuildOptions(Path("app"), tags=["web:1"]), ImageStore(work_dir), progress=print)

parse.py reads the Dockerfile, context.py the build context, builder.py runs
the stages, workspace.py what runs on the host (overlay roots, RUN under the OCI
runtime, the build's record), layers.py makes layers, cache.py keys them,
ship.py copies the image to other stores and pushes it.
"""
from executor.images.dockerfile.builder import BuildOptions, BuildResult, RunFailed, StepReport, build
from executor.images.dockerfile.parse import DockerfileError
from executor.images.dockerfile.ship import copy_image, push

__all__ = ["BuildOptions", "BuildResult", "DockerfileError", "RunFailed", "StepReport", "build", "copy_image",
           "push"]
