"""Dashboard sessions: a signed cookie, the key it is signed with, and CSRF tokens.

The session is a small JSON object (who signed in, when, the CSRF token, flash messages)
signed with itsdangerous (HMAC-SHA1 over a key derivation; timestamped, 7 days) and kept in
the ``splice_session`` cookie: HttpOnly, SameSite=Lax, Secure when the dashboard is served
over https. The signing key is random, kept in ``$SPLICE_HOME/dashboard.key`` (mode 0600)
and shared by every serve process on the same home, so a session works on all of them and
survives restarts; deleting the file signs everyone out.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..errors import ConfigError
from ..secrets import home

__all__ = ["COOKIE", "MAX_AGE", "Sessions", "key_path", "load_or_create_key", "new_session"]

COOKIE = "splice_session"
MAX_AGE = 7 * 24 * 3600  # seconds
KEY_FILE = "dashboard.key"
MAX_COOKIE = 3800  # bytes: browsers drop cookies over 4 KB; flashes are cut to stay under


def key_path() -> Path:
    return home() / KEY_FILE


def load_or_create_key() -> bytes:
    """The session signing key, made on first use (0600)."""
    path = key_path()
    try:
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read the dashboard key file {path}: {exc.strerror}") from None
    key = secrets.token_urlsafe(48).encode()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the dashboard key file {path}: {exc.strerror}") from None
    return key


def new_session() -> dict[str, Any]:
    """A signed-in session with a fresh CSRF token."""
    return {"user": "admin", "csrf": secrets.token_urlsafe(32)}


class Sessions:
    """Reads and writes the session cookie."""

    def __init__(self, key: bytes, *, secure: bool = False) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="splice-dashboard-session")
        self.secure = secure

    def load(self, value: str | None) -> dict[str, Any]:
        """The session in a cookie value; empty when absent, tampered with or expired."""
        if not value or len(value) > 8192:
            return {}
        try:
            data = self._serializer.loads(value, max_age=MAX_AGE)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    def header(self, session: dict[str, Any]) -> str:
        """The ``Set-Cookie`` value that stores ``session`` (or deletes the cookie)."""
        flags = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if self.secure else "")
        if not session:
            return f"{COOKIE}=; Max-Age=0{flags}"
        value = self._serializer.dumps(session)
        while len(value) > MAX_COOKIE and session.get("flashes"):
            session["flashes"] = session["flashes"][1:]
            value = self._serializer.dumps(session)
        return f"{COOKIE}={value}; Max-Age={MAX_AGE}{flags}"
