"""What the core measures (Prometheus): offers, launches, statuses, and the time each step takes."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS_LAUNCHED = Counter("dockyard_scheduler_tasks_launched", "Tasks sent to Mesos in an ACCEPT")
STATUS_UPDATES = Counter("dockyard_scheduler_status_updates", "Status updates received", ["state"])
OFFERS = Counter("dockyard_scheduler_offers", "Offers handled", ["outcome"])
PENDING = Gauge("dockyard_scheduler_tasks_pending", "Tasks waiting for an offer")
_FINE = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
QUEUE_LATENCY = Histogram("dockyard_scheduler_queue_seconds", "Submit to launch, seconds", buckets=_FINE)
CALL_SECONDS = Histogram("dockyard_scheduler_mesos_call_seconds", "One call to the master, seconds",
                         ["call"], buckets=_FINE)
CORE_WAIT = Histogram("dockyard_scheduler_status_queue_seconds",
                      "Status update waiting for the core thread, seconds", buckets=_FINE)
APPLY_SECONDS = Histogram("dockyard_scheduler_status_apply_seconds",
                          "Storing one status update and telling its owner, seconds", buckets=_FINE)
ACK_LATENCY = Histogram("dockyard_scheduler_status_ack_seconds",
                        "Status update received from the driver to ACK sent, seconds", buckets=_FINE)
OFFER_ROUND = Histogram("dockyard_scheduler_offer_round_seconds",
                        "Offers received to ACCEPT/DECLINE sent, seconds", buckets=_FINE)
