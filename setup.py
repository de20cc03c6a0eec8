"""dockyard: a Mesos framework for running your own PaaS."""
from setuptools import find_packages, setup

setup(
    name="dockyard",
    version="0.1.0",
    description="A Mesos framework: Marathon-style services and Metronome-style jobs "
    "in layered OCI containers, with an embedded single-machine cluster.",
    python_requires=">=3.11",
    packages=find_packages(include=["framework*", "scheduler*", "executor*"]),
    package_data={"framework.seccomp": ["*.json"],  # the default seccomp profile
                  "executor.containers": ["hostinit.c"],  # built on the agent (hostinit.py)
                  "scheduler.ui": ["templates/*.html", "static/*"]},
    py_modules=["dockyard"],
    install_requires=[
        "addict>=2.4",
        "kazoo>=2.9",
        "prometheus-client>=0.17",
        "starlette>=0.37",
        "uvicorn>=0.29",
        "httptools>=0.6",  # uvicorn's C HTTP parser: several times h11's request rate
        "uvloop>=0.19",  # the agent and master loops carry every status update
        "httpx>=0.27",
        "sniffio>=1.3",  # without it httpcore retries a failing `import sniffio` on every async request
        "PyYAML>=6.0",
        "pydantic>=2.6",
        "click>=8.1",
        "rich>=13.7",
        "croniter>=2.0",
        "tzdata>=2024.1",  # IANA time zones for job schedules, also on hosts without /usr/share/zoneinfo
        "PyJWT>=2.8",  # executor tokens (HS256, Mesos's claims)
        "cryptography>=42",  # the CA and certificates `up`, the lab and Vagrant generate
        "Jinja2>=3.1",  # the web UI's templates
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",  # `make test` runs the suite in two workers
            "marathon==0.13.0",
            "hypothesis>=6.100",  # property tests of the Mesos JSON calls (tests/local)
            "schemathesis>=4.0",  # the scheduler's OpenAPI document, fuzzed (tests/scheduler)
            "selenium>=4.20",  # the web UI in headless Chromium (tests/ui)
        ],
    },
    entry_points={"console_scripts": ["dockyard = dockyard:main"]},
)
