"""The emulator kit for connector authors: a local, stateful fake of an API to test against.

A connector's sandbox is a Starlette app built by a factory (``create_app(config)``) named in its
manifest; :func:`serve` runs it with uvicorn on a free loopback port in a thread, and
:class:`OAuthServer` gives it an OAuth 2.0 server (authorization code + PKCE, rotating refresh
tokens, expiry, revocation) with :class:`AuthFailure`/:class:`OAuthFailure` mapped to the
provider's error shapes, and :class:`WebhookSender` delivers signed webhooks with retries.
``splice sandbox CONNECTOR`` and ``splice demo`` start them.

This is the public home of the kit; ``splice.sandboxes`` and ``splice.sandbox_oauth`` are the
old module paths, kept for one release.
"""

from .oauth_server import (
    AuthFailure,
    OAuthClient,
    OAuthFailure,
    OAuthServer,
    TokenInfo,
    pkce_challenge,
    redirect_uri_matches,
)
from .server import HOST, SandboxConfig, free_port, load_factory, serve
from .webhooks import DEFAULT_SCHEDULE, WebhookSender

__all__ = [
    "DEFAULT_SCHEDULE",
    "HOST",
    "AuthFailure",
    "OAuthClient",
    "OAuthFailure",
    "OAuthServer",
    "SandboxConfig",
    "TokenInfo",
    "WebhookSender",
    "free_port",
    "load_factory",
    "pkce_challenge",
    "redirect_uri_matches",
    "serve",
]
