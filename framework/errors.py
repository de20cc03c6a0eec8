"""The dockyard error tree: one base, grouped subclasses, translated at the boundary."""
from __future__ import annotations


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""


class MesosError(DockyardError):
    """A Mesos API call failed or the master answered with an error."""


class SpecError(DockyardError):
    """A job or app spec is invalid; `field` names the offending path (rendered as 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ContainerError(DockyardError):
    """A container could not be prepared, started or cleaned up."""


class ImagePullError(ContainerError):
    """An image could not be fetched or verified."""


class LayerRejected(ContainerError):
    """A layer tarball holds an entry that is not allowed; `entry` names it."""

    def __init__(self, entry: str, why: str) -> None:
        super().__init__(f"layer entry {entry!r} refused: {why}")
        self.entry = entry
        self.why = why


class StoreError(DockyardError):
    """State could not be read or written."""


class ConflictError(StoreError):
    """A versioned write lost a race: somebody else wrote first."""


class LeadershipError(DockyardError):
    """Leader election could not be joined or read (ZooKeeper unreachable)."""


class SecurityError(DockyardError):
    """A security setting cannot be used: a credentials, ACL, key or certificate file, or a
    combination of flags that would leave a component open (docs/security.md)."""
