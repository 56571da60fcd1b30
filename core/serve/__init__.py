"""``splice serve``: every enabled recipe, always on, in one process.

:mod:`~splice.serve.app` assembles the Starlette application from the parts here: the webhook
:mod:`~splice.serve.receiver` (verified deliveries, committed by the :mod:`~splice.serve.ingest`
writer before the 2xx), the :mod:`~splice.serve.book` of registered recipes (hot reload), the
:mod:`~splice.serve.scheduler` (polls, inbox processing, run-now, on a bounded worker pool),
REST-hook :mod:`~splice.serve.subscriptions`, the JSON :mod:`~splice.serve.api` with its
:mod:`~splice.serve.openapi` document, :mod:`~splice.serve.metrics` and JSON
:mod:`~splice.serve.logs`. :mod:`~splice.serve.server` runs it under uvicorn with a graceful
SIGTERM.
"""

from .config import ServeConfig

__all__ = ["ServeConfig"]
