"""The ``splice`` command line (``splice.cli:main``)."""

from .main import cli, main

__all__ = ["cli", "main"]
