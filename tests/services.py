"""What every test that needs an outside service does when it is missing: skip, saying how to
get it, or, under ``CI=true`` (where the service must be there), fail."""

from __future__ import annotations

import os

import pytest


def need(reason: str | None) -> None:
    """Skip (under CI=true: fail) the calling test when ``reason`` says why it cannot run."""
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
