"""`dockyard lab`: a multi-node cluster on one Linux host.

Each node is a network namespace on a private bridge, with its own address,
so that partitions, node crashes and "reachable at the node's address" behave
as they would between real machines. The lab keeps a state file of everything
it creates (written before each step), so `lab down` can undo a lab whose
`lab up` crashed half-way.
"""
from __future__ import annotations

from framework.errors import DockyardError


class LabError(DockyardError):
    """A lab could not be built, inspected or taken down."""


class NetworkError(LabError):
    """An `ip` command failed; the message carries its command line and stderr."""


__all__ = ["LabError", "NetworkError"]
