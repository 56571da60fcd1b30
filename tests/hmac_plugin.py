"""A third-party auth type, as a plugin would ship it: requests signed with an HMAC header.

``hmac_signature`` sends ``X-Timestamp: <unix seconds>`` and ``X-Signature: v1=<hex
HMAC-SHA256 of "<timestamp>.<METHOD>.<path?query>.<body>">`` keyed with the connection's
stored secret (``splice connections add NAME --connector ID`` stores it as ``secret``).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import httpx

from splice import hookimpl

from .authapi import sign


class HmacAuth(httpx.Auth):
    requires_request_body = True

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        stamp = str(int(time.time()))
        target = request.url.raw_path.decode("ascii")
        request.headers["X-Timestamp"] = stamp
        request.headers["X-Signature"] = sign(self.secret, stamp, request.method, target,
                                              request.content)
        yield request


@hookimpl
def register_auth_types(register: Any) -> None:
    register("hmac_signature",
             lambda connector, connection, store: HmacAuth(connection.secret["secret"]))
