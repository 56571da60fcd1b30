"""``StatelessClient.send``: httpx's transport, event hooks and auth flow driven without the
redirect loop, stream wrapper and cookie jar; the same answers as ``httpx.Client.send``, and
httpx's own ``send`` for everything it does not cover."""

from __future__ import annotations

from collections.abc import Generator

import httpx
import pytest

from splice.http.client import StatelessClient


class _Retry401(httpx.Auth):
    """Adds a token; after a 401 asks for the request again with a fresh one (like a refresh)."""

    def __init__(self) -> None:
        self.token = "old"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            self.token = "new"
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


def _api(seen: list[httpx.Request], auths: list[str] | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if auths is not None:
            auths.append(request.headers.get("Authorization", ""))
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"Location": "/elsewhere"})
        if request.headers.get("Authorization") == "Bearer old":
            return httpx.Response(401, json={"error": "expired"})
        return httpx.Response(200, json={"path": request.url.path})
    return httpx.MockTransport(handle)


def test_the_lean_send_answers_as_httpx_does(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    auths: list[str] = []
    hooks: list[str] = []
    lean = StatelessClient(transport=_api(seen, auths), auth=_Retry401(), timeout=7,
                           event_hooks={"request": [lambda r: hooks.append("request")],
                                        "response": [lambda r: hooks.append("response")]})
    monkeypatch.setattr(httpx.Client, "send", lambda *a, **k: pytest.fail("httpx's send"))
    response = lean.send(httpx.Request("POST", "http://api.test/items", content=b"{}"))
    assert response.status_code == 200 and response.json() == {"path": "/items"}
    assert response.is_closed and response.request is seen[-1]
    assert auths == ["Bearer old", "Bearer new"]
    assert hooks == ["request", "response", "request", "response"]
    assert seen[0].extensions["timeout"] == httpx.Timeout(7).as_dict()
    moved = lean.send(httpx.Request("GET", "http://api.test/moved"))
    assert moved.status_code == 302 and [r.url.path for r in seen[-1:]] == ["/moved"]


def test_transport_errors_name_their_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = StatelessClient(transport=httpx.MockTransport(refuse))
    request = httpx.Request("GET", "http://api.test/x")
    with pytest.raises(httpx.ConnectError) as raised:
        client.send(request)
    assert raised.value.request is request


def test_what_the_lean_send_does_not_cover_goes_through_httpx(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    real = httpx.Client.send

    def counted(self: httpx.Client, request: httpx.Request, **kwargs: object) -> httpx.Response:
        calls.append(kwargs)
        return real(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", counted)
    seen: list[httpx.Request] = []
    auths: list[str] = []
    client = StatelessClient(transport=_api(seen, auths))
    client.send(httpx.Request("GET", "http://api.test/a"))
    assert calls == []  # the lean path
    client.send(httpx.Request("GET", "http://api.test/a"), stream=True).close()
    client.send(httpx.Request("GET", "http://u:p@api.test/a"))  # credentials in the URL
    followed = client.send(httpx.Request("GET", "http://api.test/moved"), follow_redirects=True)
    assert len(calls) == 3 and followed.history and seen[-1].url.path == "/elsewhere"
    assert auths[2].startswith("Basic ")
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.send(httpx.Request("GET", "http://api.test/a"))


class _Body(httpx.SyncByteStream):
    """A response body in chunks that records being closed (the connection freed)."""

    def __init__(self, chunks: list[bytes], fail: bool = False) -> None:
        self.chunks, self.fail, self.closed = chunks, fail, False

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from self.chunks
        if self.fail:
            raise httpx.ReadError("connection reset")

    def close(self) -> None:
        self.closed = True


def test_a_plain_body_is_read_from_the_transport_and_an_encoded_one_decoded() -> None:
    import gzip

    from splice.http import client as module

    assert module._LEAN_READ  # this httpx keeps the body where the lean read puts it
    bodies: list[_Body] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gzip":
            return httpx.Response(200, headers={"Content-Encoding": "gzip"},
                                  content=gzip.compress(b'{"zipped": true}'))
        bodies.append(_Body([b'{"a": ', b"1}"], fail=request.url.path == "/reset"))
        return httpx.Response(200, stream=bodies[-1])

    client = StatelessClient(transport=httpx.MockTransport(handle))
    plain = client.send(httpx.Request("GET", "http://api.test/plain"))
    assert plain.content == b'{"a": 1}' and plain.json() == {"a": 1} and plain.text
    assert plain.is_closed and plain.is_stream_consumed and bodies[0].closed
    assert client.send(httpx.Request("GET", "http://api.test/gzip")).json() == {"zipped": True}
    reset = httpx.Request("GET", "http://api.test/reset")
    with pytest.raises(httpx.ReadError) as raised:
        client.send(reset)
    assert raised.value.request is reset and bodies[-1].closed
