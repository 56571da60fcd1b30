"""Deprecated: use ``splice.sandbox`` (this module path is kept for one release)."""

import warnings

from .sandbox.server import *  # noqa: F403
from .sandbox.server import __all__  # noqa: F401

warnings.warn("splice.sandboxes is deprecated; import from splice.sandbox", DeprecationWarning,
              stacklevel=2)
