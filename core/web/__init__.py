"""The dashboard: server-rendered pages served by ``splice serve`` at ``/``.

:class:`~splice.web.app.Dashboard` holds the page modules' routes and renders their
templates; :mod:`splice.web.security` signs people in (one-time links), keeps sessions in
signed cookies and checks CSRF tokens and security headers for the whole application.
"""

from .app import Dashboard
from .security import WebGate

__all__ = ["Dashboard", "WebGate"]
