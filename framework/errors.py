"""The dockyard error tree: one base, grouped subclasses, translated at the boundary."""
from __future__ import annotations


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""


class NotFound(DockyardError):
    """What a request names does not exist: an app, a job, a run, a secret (404)."""


class Conflict(DockyardError):
    """A request clashes with the current state: an id taken, an object still in use (409)."""


class Forbidden(DockyardError):
    """The caller may not do this (403); `details` names the refused fields when there are any."""

    def __init__(self, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.details = details


class MesosError(DockyardError):
    """A Mesos API call failed or the master answered with an error."""


class SpecError(DockyardError):
    """A job or app spec is invalid; `field` names the offending path (rendered as 422), and
    `details`, when set, every offending path (Marathon's `[{"path", "errors"}]`)."""

    details: list[dict] | None = None

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


class ConflictError(StoreError, Conflict):
    """A versioned write lost a race: somebody else wrote first (a conflict, not an outage)."""


class LeadershipError(DockyardError):
    """Leader election could not be joined or read (ZooKeeper unreachable)."""


class SecurityError(DockyardError):
    """A security setting cannot be used: a credentials, ACL, key or certificate file, or a
    combination of flags that would leave a component open (docs/security.md)."""
