"""Deprecated: use ``splice.sandbox`` (this module path is kept for one release)."""

import warnings

from .sandbox.oauth_server import *  # noqa: F403
from .sandbox.oauth_server import __all__  # noqa: F401

warnings.warn("splice.sandbox_oauth is deprecated; import from splice.sandbox", DeprecationWarning,
              stacklevel=2)
