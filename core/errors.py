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
    │   └── AuthError               401/403, refresh failure, missing scope
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


class ValidationFailed(SpliceError):
    """A payload or a response does not match its JSON Schema."""

    exit_code = 1
