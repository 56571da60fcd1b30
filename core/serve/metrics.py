"""Prometheus metrics of one serve process (``GET /metrics``), in a registry of its own.

Names and labels (no label ever holds payload data, a secret or an unbounded value: a
rejected delivery for an unknown connection is counted by reason only):

- ``splice_webhook_deliveries_accepted_total{connection}``
- ``splice_webhook_deliveries_rejected_total{reason}`` (``splice.signatures.REASONS``)
- ``splice_webhook_ack_seconds`` histogram: from request to answer
- ``splice_events_total{recipe, outcome}``: ``processed``, ``failed``, ``dead`` (``recipe``
  labels hold the recipe id)
- ``splice_inbox_depth``: deliveries waiting
- ``splice_poll_lag_seconds{recipe}``: how late the last poll started; and a histogram
- ``splice_polls_total{recipe, status}``
- ``splice_rate_budget_remaining{connection}``: requests left in the API's window, as its
  rate-limit headers last said
- ``splice_scheduler_alive``: 1 while the scheduler loop turns
- with a broker (``splice worker`` deployments): ``splice_broker_up`` (1 when the broker
  took the last task), ``splice_tasks_sent_total{task}``, ``splice_requeued_total{kind}``
  (``delivery``, ``event``: what the reconciler sent again) and ``splice_scheduler_leader``
  (1 in the serve process holding the scheduler lease)
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter("splice_webhook_deliveries_accepted",
                                "Webhook deliveries verified and stored", ["connection"],
                                registry=r)
        self.rejected = Counter("splice_webhook_deliveries_rejected",
                                "Webhook deliveries turned away, by reason", ["reason"],
                                registry=r)
        self.ack = Histogram("splice_webhook_ack_seconds", "Time to answer a delivery",
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                             registry=r)
        self.events = Counter("splice_events", "Events processed, failed or dead-lettered",
                              ["recipe", "outcome"], registry=r)
        self.inbox_depth = Gauge("splice_inbox_depth", "Deliveries waiting to be processed",
                                 registry=r)
        self.poll_lag = Gauge("splice_poll_lag_seconds", "How late the last poll started",
                              ["recipe"], registry=r)
        self.poll_lag_hist = Histogram("splice_poll_lag_distribution_seconds",
                                       "How late polls started",
                                       buckets=(.05, .1, .25, .5, 1, 2, 5, 10, 30, 60),
                                       registry=r)
        self.polls = Counter("splice_polls", "Polls run, by outcome", ["recipe", "status"],
                             registry=r)
        self.budget = Gauge("splice_rate_budget_remaining",
                            "Requests left in the API's rate-limit window", ["connection"],
                            registry=r)
        self.alive = Gauge("splice_scheduler_alive", "1 while the scheduler runs", registry=r)
        self.broker_up = Gauge("splice_broker_up", "1 when the broker took the last task",
                               registry=r)
        self.sent = Counter("splice_tasks_sent", "Tasks sent to the broker", ["task"],
                            registry=r)
        self.requeued = Counter("splice_requeued", "Work the reconciler sent again",
                                ["kind"], registry=r)
        self.leader = Gauge("splice_scheduler_leader",
                            "1 in the serve process holding the scheduler lease", registry=r)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def count_report(self, recipe: str, report: Any) -> None:
        """Add a run report's outcomes to the event counters."""
        if report.events_succeeded:
            self.events.labels(recipe, "processed").inc(report.events_succeeded)
        if report.events_failed:
            self.events.labels(recipe, "failed").inc(report.events_failed)
