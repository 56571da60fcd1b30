"""``splice worker``: a Celery worker that runs recipes' events and polls (see docs/deploy.md)."""

from __future__ import annotations

import logging
import os

import click

from .common import handle_errors


@click.command()
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=8,
              show_default=True,
              help="Tasks this worker runs at once (threads of one process by default).")
@click.option("-Q", "--queues", default="splice", show_default=True, metavar="NAMES",
              help="Comma-separated queues to take tasks from.")
@click.option("--pool", type=click.Choice(["threads", "prefork", "solo"]), default="threads",
              show_default=True,
              help="How tasks run at once: threads in this process (right for API calls, "
                   "which wait on the network), prefork child processes, or solo (one at a "
                   "time).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.option("-n", "--hostname", default=None, metavar="NAME",
              help="The worker's node name (default splice-PID@HOST).")
@handle_errors
def worker(concurrency: int, queues: str, pool: str, log_level: str,
           hostname: str | None) -> None:
    """Run recipes' events and polls taken from the broker, until SIGTERM.

    \b
    Needs SPLICE_BROKER_URL (redis://HOST:6379/0) and the shared state database in
    SPLICE_DATABASE_URL (postgresql+psycopg://...), the same for `splice serve` and every
    worker. Serve stores each webhook delivery and sends it here; its scheduler sends due
    polls; a poll stores new events and sends each one back to the workers. Tasks are
    acknowledged after they ran: a worker killed mid-task has its task delivered again, and
    the state database makes each action happen once. Start as many workers, on as many
    hosts, as the APIs' budgets allow. SIGTERM finishes the running tasks, then exits.
    """
    from ..serve.logs import setup_json_logging
    from ..worker.broker import broker_url, check_broker

    handler = setup_json_logging(getattr(logging, log_level.upper()))
    celery_log = logging.getLogger("celery")  # task failures, lost connections
    celery_log.handlers[:] = [handler]
    celery_log.setLevel(max(logging.WARNING, getattr(logging, log_level.upper())))
    celery_log.propagate = False
    for name in ("httpx", "httpcore"):  # one line a request: only with --log-level debug
        logging.getLogger(name).setLevel(max(logging.WARNING, celery_log.level))
    url = broker_url(required=True)
    assert url is not None
    check_broker(url)
    os.environ.setdefault("SPLICE_DATABASE_POOL_SIZE", str(min(concurrency, 64) + 4))
    from ..store.database import Store

    Store.open().close()  # the database answers and its schema is current, before any task
    from ..worker.tasks import worker_app

    app = worker_app(url)
    argv = ["worker", f"--concurrency={concurrency}", f"--pool={pool}",
            f"--queues={queues}", f"--loglevel={log_level.upper()}", "--without-gossip",
            "--without-mingle", "--without-heartbeat",
            f"--hostname={hostname or f'splice-{os.getpid()}@%h'}"]
    app.worker_main(argv)
