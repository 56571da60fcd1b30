"""Secrets: encryption at rest, secret references, and redaction.

* ``SecretBox`` encrypts JSON-able dicts with Fernet. The key comes from ``SPLICE_SECRET_KEY``
  or from ``<home>/secret.key`` (created on first use, mode 0600). ``SPLICE_SECRET_KEY`` may be
  a Fernet key (``SecretBox.generate_key()``) or any other string, in which case a Fernet key is
  derived from it with HKDF-SHA256. HKDF does not slow down guessing, so a passphrase used this
  way must be long and random; a generated Fernet key is the better choice.
* ``resolve_secret_ref`` turns ``{"$env": "NAME"}`` / ``{"$file": "path"}`` into the value and
  registers it with the redactor, so client secrets are referenced, never inlined.
* ``REDACTOR`` masks every registered secret in text; ``RedactingFilter`` applies it to log
  records and ``redact_headers`` masks credential-bearing HTTP headers.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import platformdirs

from .errors import ConfigError

__all__ = [
    "MASK",
    "REDACTOR",
    "RedactingFilter",
    "Redactor",
    "SecretBox",
    "home",
    "redact_data",
    "redact_headers",
    "redact_text",
    "resolve_secret_ref",
]

KEY_ENV = "SPLICE_SECRET_KEY"
HOME_ENV = "SPLICE_HOME"
KEY_FILE = "secret.key"
MASK = "***"

# Fixed HKDF parameters: changing them changes every derived key, so they are versioned.
_HKDF_SALT = b"splice/secret-key/v1"
_HKDF_INFO = b"splice fernet key"

log = logging.getLogger(__name__)


def home() -> Path:
    """The splice home directory: ``$SPLICE_HOME`` or the platform's user data dir."""
    path = Path(os.environ.get(HOME_ENV) or platformdirs.user_data_dir("splice")).expanduser()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


# --------------------------------------------------------------------------- encryption


def _fernet() -> Any:
    """cryptography's Fernet, imported when a secret is first encrypted, decrypted or keyed
    (commands that never touch one, like ``splice validate``, do not pay ~25 ms for it)."""
    from cryptography.fernet import Fernet

    return Fernet


def _fernet_key(value: str) -> bytes:
    """``value`` itself if it is a Fernet key, else a key derived from it with HKDF-SHA256."""
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    fernet = _fernet()
    raw = value.strip().encode()
    try:
        fernet(raw)
        return raw
    except (ValueError, binascii.Error):
        pass
    derived = HKDF(algorithm=SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(raw)
    return base64.urlsafe_b64encode(derived)


def _read_key_file(path: Path) -> bytes | None:
    """The key stored in ``path``; None while a sibling process is still writing it."""
    data = path.read_bytes().strip()
    if not data:
        return None
    try:
        _fernet()(data)
    except (ValueError, binascii.Error):
        return None
    return data


def _load_or_create_key_file(path: Path) -> bytes:
    """Read the key file, creating it (0600, exclusive create) if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = _fernet().generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read its key below
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            return key
    # The file exists; a sibling may have created it a moment ago and still be writing.
    for _ in range(100):
        stored = _read_key_file(path)
        if stored is not None:
            if os.name == "posix" and path.stat().st_mode & 0o077:
                log.warning("secret key file %s is readable by other users; run: chmod 600 %s",
                            path, path)
            return stored
        time.sleep(0.02)
    raise ConfigError(f"the secret key file {path} is empty or corrupt",
                      hint=f"restore it from a backup, or set {KEY_ENV}")


class SecretBox:
    """Fernet encryption of JSON-able dicts (the ``secret`` column of stored connections)."""

    def __init__(self, key: bytes | str) -> None:
        self._fernet = _fernet()(key if isinstance(key, bytes) else key.encode())

    @staticmethod
    def generate_key() -> str:
        """A fresh random Fernet key, suitable for ``SPLICE_SECRET_KEY``."""
        return str(_fernet().generate_key().decode())

    @classmethod
    def from_env(cls, home_dir: Path | None = None) -> SecretBox:
        """Key from ``SPLICE_SECRET_KEY`` if set, else from ``<home>/secret.key``."""
        value = os.environ.get(KEY_ENV)
        if value is not None:
            if not value.strip():
                raise ConfigError(f"{KEY_ENV} is set but empty")
            return cls(_fernet_key(value))
        return cls(_load_or_create_key_file((home_dir or home()) / KEY_FILE))

    def encrypt(self, data: Mapping[str, Any]) -> bytes:
        """Encrypt a JSON-able dict into a Fernet token."""
        return self._fernet.encrypt(json.dumps(dict(data), separators=(",", ":")).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        """Decrypt a token made by ``encrypt``; a different key raises ``ConfigError``."""
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet.decrypt(bytes(token))
        except InvalidToken:
            raise ConfigError(
                "stored secrets cannot be decrypted: the secret key changed",
                hint=f"restore the previous {KEY_ENV} or {KEY_FILE}, or reconnect the connection",
            ) from None
        data = json.loads(plain)
        if not isinstance(data, dict):
            raise ConfigError("stored secret is not an object")
        return data


# --------------------------------------------------------------------------- references


def resolve_secret_ref(value: Any) -> Any:
    """Resolve ``{"$env": NAME}`` or ``{"$file": path}``; other values are returned as they are.

    The resolved value is registered with ``REDACTOR`` so it never shows in logs or errors.
    """
    if not (isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)):
        return value
    if len(value) != 1:
        raise ConfigError("a secret reference has exactly one key: $env or $file")
    ((kind, arg),) = value.items()
    if not isinstance(arg, str) or not arg:
        raise ConfigError(f"secret reference {kind} needs a non-empty string")
    if kind == "$env":
        if arg not in os.environ:
            raise ConfigError(f"environment variable {arg} is not set",
                              hint="export it, or change the secret reference")
        resolved = os.environ[arg]
    elif kind == "$file":
        path = Path(arg).expanduser()
        try:
            resolved = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    else:
        raise ConfigError(f"unknown secret reference {kind!r}; use $env or $file")
    REDACTOR.add(resolved)
    return resolved


# --------------------------------------------------------------------------- redaction


# Characters json.dumps escapes: a secret containing one is not found verbatim in JSON text.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


class Redactor:
    """Masks registered secret strings (six characters or more) in text."""

    min_length = 6

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._json_safe = True  # no secret has a character JSON text escapes
        for secret in secrets:
            self.add(secret)

    def add(self, value: Any) -> None:
        """Register a secret; its URL-encoded, upper-case, lower-case and base64 forms are
        masked too. Short values are ignored."""
        if not isinstance(value, str) or len(value) < self.min_length:
            return
        raw = value.encode()
        encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
        forms = {value, quote(value, safe=""), quote_plus(value), value.upper(), value.lower(),
                 *encoded, *(e.rstrip("=") for e in encoded)}
        with self._lock:
            if not forms <= self._secrets:
                self._secrets |= forms
                self._pattern = None

    def __contains__(self, value: object) -> bool:
        return value in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)

    def clear(self) -> None:
        """Forget every registered secret."""
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        pattern = self._pattern  # the common case, without the lock
        if pattern is not None or not self._secrets:
            return pattern
        with self._lock:
            if self._pattern is None and self._secrets:
                # Longest first, so a secret containing another is masked whole.
                ordered = sorted(self._secrets, key=len, reverse=True)
                # _json_safe first: a lock-free reader that sees the new pattern sees it too
                self._json_safe = not any(_JSON_ESCAPED.search(s) for s in ordered)
                self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
            return self._pattern

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def absent_from_json(self, text: str) -> bool:
        """Whether JSON ``text`` (dumped with ``ensure_ascii=False``) certainly holds no
        registered secret."""
        pattern = self._compiled()
        return pattern is None or (self._json_safe and pattern.search(text) is None)

    def redact_json(self, value: Any) -> Any:
        """A JSON-able value with secrets masked in every string (keys included): a masked
        copy, or ``value`` itself when it holds no secret (found with one search of its JSON
        text instead of a walk over every string)."""
        if self._compiled() is None:
            return value
        if isinstance(value, Mapping | list | tuple):
            try:
                text = json.dumps(value, ensure_ascii=False, default=str)
            except (TypeError, ValueError):
                text = None
            if text is not None and self.absent_from_json(text):
                return value
        return self._redact_walk(value)

    def _redact_walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self._redact_walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._redact_walk(v) for v in value]
        return value


REDACTOR = Redactor()

_SECRET_KEY = (r"[\w-]*(?:authorization|token|secret|password|passwd|api[_-]?key|apikey|"
               r"access[_-]?key|private[_-]?key|cookie|session|signature|credential)[\w-]*")
_SECRET_PAIR = re.compile(r"(?i)(\"?" + _SECRET_KEY + r"\"?\s*[:=]\s*)"
                          r"(\"(?:[^\"\\]|\\.)*\"|'[^']*'|(?:(?:bearer|basic|token|digest)\s+)?"
                          r"[^\s,;&}\]\"']+)")
# ``Bearer <token>``: a credential-looking word (8+ characters with a digit or a symbol) after
# an auth scheme; "bad basic credentials" stays readable
_SCHEME_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Digest|bearer|BEARER|BASIC)\s+"
                                r"(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}")


def redact_text(text: str, limit: int = 300) -> str:
    """Text from outside (an API's error body) made safe to show: every registered secret
    masked (its encoded and case forms too), every value under an authorization, token,
    secret, password, key, cookie or session-like key masked, credentials after ``Bearer`` /
    ``Basic`` masked, control characters dropped, and cut to ``limit`` characters."""
    text = _SECRET_PAIR.sub(lambda m: m.group(1) + MASK, text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = REDACTOR.redact(text)
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def redact_data(value: Any, depth: int = 0) -> Any:
    """A JSON value with everything under a secret-like key masked (for error bodies)."""
    if depth > 50:
        return MASK
    if isinstance(value, Mapping):
        return {k: MASK if re.fullmatch(_SECRET_KEY, str(k), re.I) else
                redact_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_data(v, depth + 1) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Masks registered secrets in a record's message, args and traceback.

    Attach it to handlers: a filter on a logger does not see records from its child loggers.
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor or REDACTOR

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, still masked
            message = f"{record.msg} {record.args}"
        record.msg = self.redactor.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
_SENSITIVE_PARTS = ("token", "secret", "key")
# Names that contain a sensitive part but carry no secret (kept for debugging).
_HARMLESS_HEADERS = frozenset({"idempotency-key"})
_AUTH_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\s+\S")


@functools.lru_cache(maxsize=512)
def _is_sensitive(name: str) -> bool:
    lower = name.lower()
    if lower in _HARMLESS_HEADERS:
        return False
    return lower in _SENSITIVE_HEADERS or any(part in lower for part in _SENSITIVE_PARTS)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A plain dict of headers with credentials masked.

    Authorization-style headers keep their scheme (``Bearer ***``); any header whose name
    contains token, secret or key is masked (``Idempotency-Key`` excepted), and registered
    secrets are masked in every other value.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        name, value = str(name), str(value)
        lower = name.lower()
        if lower in ("authorization", "proxy-authorization"):
            scheme = _AUTH_SCHEME.match(value)
            out[name] = f"{scheme.group(1)} {MASK}" if scheme else MASK
        elif _is_sensitive(name):
            out[name] = MASK
        else:
            out[name] = REDACTOR.redact(value)
    return out
