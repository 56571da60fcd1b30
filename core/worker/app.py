"""The Celery application of ``splice worker`` and of the processes that send it tasks.

Tasks are acknowledged late (after they ran: a worker killed mid-task has the message
delivered again), rejected back to the queue when the worker process is lost, and each worker
thread prefetches one message at a time (a slow task never holds a queue of others). Messages
are JSON. Results are not stored: what a task did is in the state database.
"""

from __future__ import annotations

import os
from typing import Any

QUEUE = "splice"
VISIBILITY_ENV = "SPLICE_BROKER_VISIBILITY_TIMEOUT"
DEFAULT_VISIBILITY = 300.0  # seconds before Redis hands an unacknowledged message out again


def visibility_timeout() -> float:
    raw = os.environ.get(VISIBILITY_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_VISIBILITY
    except ValueError:
        value = DEFAULT_VISIBILITY
    return value if value > 0 else DEFAULT_VISIBILITY


def make_app(url: str) -> Any:
    """A Celery app on the broker at ``url``, without tasks (a sender names them;
    :func:`splice.worker.tasks.worker_app` registers them for a worker)."""
    from celery import Celery

    app = Celery("splice", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={"visibility_timeout": visibility_timeout(),
                                  "socket_connect_timeout": 3, "socket_timeout": 10},
        broker_pool_limit=4,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_enable_remote_control=False,
    )
    return app
