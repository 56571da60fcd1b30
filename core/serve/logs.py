"""Structured logs: one JSON object per line on stderr, secrets redacted.

Every record of the ``splice`` loggers (and uvicorn's errors) becomes
``{"ts", "level", "logger", "message", ...extra}``; ``extra`` fields given to a log call
(``recipe``, ``connection``, ``reason``, ``run_id`` ...) are kept as JSON fields. The
:class:`~splice.secrets.RedactingFilter` masks every registered secret in the message first,
and field values are masked the same way. Payloads are never logged.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ..secrets import REDACTOR, RedactingFilter

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = REDACTOR.redact(value) if isinstance(value, str) else value
        if record.exc_text:
            out["error"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_json_logging(level: int = logging.INFO) -> logging.Handler:
    """Send the ``splice`` and ``uvicorn`` loggers to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    for name in ("splice", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    return handler
