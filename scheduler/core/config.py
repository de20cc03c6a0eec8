"""The core's settings and the store keys it writes."""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TASKS_KEY = "/tasks"
FRAMEWORK_ID_KEY = "/framework/id"


def default_executor_command() -> str:
    """How an agent starts our warm executor: this interpreter and this checkout."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'dockyard.py'))} executor"


@dataclass
class CoreConfig:
    framework_name: str = "dockyard"
    # None: plain command tasks (the agent synthesises an executor per task).
    executor_command: str | None = None
    executor_id: str = "dockyard-warm"
    strategy: str = "binpack"
    max_requests_per_round: int = 500     # bound placement work (and explanations) per offer round
    reconcile_delay: float = 3.0          # explicit reconciliation gets this long first
    reconcile_interval: float = 600.0     # periodic implicit reconciliation
    keep_terminal: int = 20000            # terminal records kept in memory and store
    ack_threads: int = 4                  # outbox threads: concurrent ACCEPT/DECLINE/ACK calls
    offer_hold_seconds: float = 5.0       # keep unneeded offers this long for work that comes next
