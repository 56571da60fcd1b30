"""splice: a declarative connector plugin framework.

Public API for plugin authors and embedders; everything else is private.
"""

from .errors import (
    AuthError,
    ConfigError,
    DocumentError,
    HTTPError,
    InputError,
    PluginError,
    Problem,
    RequestError,
    SpliceError,
    TemplateError,
    TemplateSecurityError,
    ValidationFailed,
)
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "DocumentError",
    "HTTPError",
    "InputError",
    "PluginError",
    "Problem",
    "RequestError",
    "SpliceError",
    "TemplateError",
    "TemplateSecurityError",
    "ValidationFailed",
    "__version__",
    "hookimpl",
]
