"""One-time sign-in tokens for the dashboard.

``mint`` makes a random token, keeps only its SHA-256 digest with an expiry and returns the
token (``splice serve --print-login`` and ``splice login-link`` print it inside a link);
``consume`` accepts a token once: a single conditional UPDATE marks it used, so two browsers
racing with one link cannot both sign in, on SQLite or PostgreSQL, across serve processes.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from .tables import login_tokens, now

__all__ = ["DEFAULT_TTL", "consume", "mint"]

DEFAULT_TTL = timedelta(minutes=15)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint(store: Any, ttl: timedelta = DEFAULT_TTL) -> str:
    """A new one-time token valid for ``ttl``; expired and used tokens are pruned."""
    token = secrets.token_urlsafe(32)
    stamp = now()
    with store._write() as conn:
        conn.execute(sa.delete(login_tokens).where(sa.or_(
            login_tokens.c.expires_at < stamp, login_tokens.c.used_at.is_not(None))))
        conn.execute(login_tokens.insert().values(
            digest=_digest(token), expires_at=stamp + ttl, used_at=None, created_at=stamp))
    return token


def consume(store: Any, token: str) -> bool:
    """Whether ``token`` was a valid unused token; it is used up either way."""
    if not token or len(token) > 256:
        return False
    stamp = now()
    with store._write() as conn:
        result = conn.execute(sa.update(login_tokens).where(
            login_tokens.c.digest == _digest(token), login_tokens.c.used_at.is_(None),
            login_tokens.c.expires_at > stamp).values(used_at=stamp))
    return bool(result.rowcount == 1)
