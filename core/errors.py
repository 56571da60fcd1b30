"""The one exception hierarchy of splice.

::

    SpliceError                     user-facing message in ``str(exc)``; exit code 2 unless noted
    ├── InputError                  bad input from a file or the command line (exit 2)
    │   ├── DocumentError           a recipe or manifest is malformed; carries file:line:col
    │   └── TemplateError           a template does not compile or fails to render
    │       └── TemplateSecurityError   a template reached for Python internals
    ├── PluginError                 a plugin failed to load or registered something invalid
    ├── ConfigError                 missing connection, secret key, unknown connector ...
    ├── RequestError                a request could not be built (bad path value, header ...)
    ├── HTTPError                   the API answered with an error status (exit 1)
    │   ├── AuthError               401/403, refresh failure, missing scope
    │   └── CircuitOpen             a connection failed N times in a row: nothing more is sent
    ├── StorageError                the state (database, run log) cannot be written (exit 1)
    │   └── StorageUnusable         ... and will not be until someone fixes it (exit 2)
    ├── LeaseLost                   another process took over this run's lease (exit 1)
    ├── OutcomeUnknown              a crash hid whether a non-idempotent write was applied (1)
    └── ValidationFailed            a payload or response does not match its JSON Schema

Messages never include template contexts, tokens or secrets: user data stays out of errors.
"""

from __future__ import annotations

from dataclasses import dataclass


class SpliceError(Exception):
    """Base class. ``str(exc)`` is the message shown to the user."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class InputError(SpliceError):
    """Bad input from a file or the command line."""


@dataclass(frozen=True)
class Problem:
    """One located problem in a document: ``file:line:col: path: message``."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DocumentError(InputError):
    """A recipe or manifest has one or more located problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TemplateError(InputError):
    """A template does not compile or fails while rendering (message names the field)."""


class TemplateSecurityError(TemplateError):
    """A template tried to reach Python internals."""


class PluginError(SpliceError):
    """A plugin failed to import or registered something invalid."""


class ConfigError(SpliceError):
    """Missing or inconsistent configuration: connection, connector, secret key."""


class RequestError(SpliceError):
    """A request could not be built safely from the rendered input."""

    exit_code = 1


class HTTPError(SpliceError):
    """The API answered with an error status."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class AuthError(HTTPError):
    """Authentication or authorisation failed (401/403, refresh failure, missing scope)."""


class CircuitOpen(HTTPError):
    """A connection's circuit breaker is open: the request was not sent."""


class StorageError(SpliceError):
    """The state database or the run log could not be read or written (disk full, database
    locked past the timeout). The message names ``$SPLICE_HOME`` or the database URL."""

    exit_code = 1


class StorageUnusable(StorageError):
    """The state cannot be used until someone acts: a read-only home, missing permissions,
    a corrupt database file."""

    exit_code = 2


class LeaseLost(SpliceError):
    """The process missed its lease's heartbeats long enough for another to take over: it
    stops before its next side effect."""

    exit_code = 1


class OutcomeUnknown(SpliceError):
    """A run died while a write without idempotency support was in flight: whether the API
    applied it is unknown, so it is not sent again by itself."""

    exit_code = 1


class ValidationFailed(SpliceError):
    """A payload or a response does not match its JSON Schema."""

    exit_code = 1
