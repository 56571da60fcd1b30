"""Requests are built safely: path values stay in their segment, headers stay one line,
and nothing leaves the connection's base URL."""

from __future__ import annotations

import httpx
import pytest

from splice.errors import RequestError
from splice.http.body import encode_json
from splice.http.client import ApiClient
from splice.http.request import CallTemplate, PreparedCall, ensure_under_base, prepare_call
from splice.model.manifest import load_manifest

from .conftest import FIXTURES

CONNECTOR = load_manifest(FIXTURES / "fakecrm.yaml")
TAGS = CONNECTOR.operations["add_tags"]
BASE = "https://crm.example/api"


@pytest.mark.parametrize("value,segment", [
    ("../admin", "..%2Fadmin"),
    ("https://other.host/", "https%3A%2F%2Fother.host%2F"),
    ("..", "%2E%2E"),
    ("a b?c#d", "a%20b%3Fc%23d"),
    ("%2e%2e", "%252e%252e"),
    ("x/../../etc", "x%2F..%2F..%2Fetc"),
])
def test_path_values_are_one_encoded_segment(value, segment):
    call = prepare_call(TAGS, CONNECTOR, {"contact_id": value, "tags": ["a"]}, base_url=BASE)
    assert call.url == f"{BASE}/contacts/{segment}/tags"
    request = call.to_request()
    assert request.url.host == "crm.example"
    assert request.url.raw_path.decode().startswith("/api/contacts/")
    assert request.url.raw_path.decode().count("/") == 4


def test_header_values_with_line_breaks_are_refused():
    connector = load_manifest(FIXTURES / "fakecrm.yaml")
    connector.headers["X-Trace"] = "a\r\nX-Injected: 1"
    with pytest.raises(RequestError, match="line break"):
        prepare_call(TAGS, connector, {"contact_id": "c1", "tags": []}, base_url=BASE)


def test_idempotency_key_with_line_break_is_refused():
    with pytest.raises(RequestError, match="line break"):
        prepare_call(CONNECTOR.operations["create_note"], CONNECTOR,
                     {"subject": "s", "body": "b"}, base_url=BASE,
                     idempotency_key="k\nHost: evil")


@pytest.mark.parametrize("url", [
    "https://evil.example/api/x", "http://crm.example/api/x", "https://crm.example:8443/api/x",
    "https://crm.example/apix", "https://crm.example/other",
])
def test_urls_outside_the_base_are_refused(url):
    with pytest.raises(RequestError, match="outside the connection's base URL"):
        ensure_under_base(url, BASE)


def test_url_under_the_base_is_accepted():
    ensure_under_base("https://crm.example/api/contacts?x=1", BASE)


def test_body_and_query_split_by_method():
    note = prepare_call(CONNECTOR.operations["create_note"], CONNECTOR,
                        {"subject": "s", "body": "00123"}, base_url=BASE,
                        idempotency_key="key-1")
    assert note.json_body == {"subject": "s", "body": "00123"}
    assert note.headers["Idempotency-Key"] == "key-1"
    listing = prepare_call(CONNECTOR.operations["list_contacts"], CONNECTOR,
                           {"skip": 0, "limit": 5}, base_url=BASE)
    assert listing.params == {"skip": "0", "limit": "5"}
    assert isinstance(listing.to_request(), httpx.Request)


def test_a_request_over_the_byte_limit_is_refused_whole(monkeypatch):
    monkeypatch.setenv("SPLICE_MAX_REQUEST_BYTES", "300")
    op = CONNECTOR.operations["create_note"]
    small = prepare_call(op, CONNECTOR, {"subject": "s", "body": "x" * 100}, base_url=BASE)
    assert small.content == b'{"subject":"s","body":"' + b"x" * 100 + b'"}'  # encoded once
    assert small.to_request().content == small.content
    with pytest.raises(RequestError, match="larger than 300 bytes; nothing was sent"):
        prepare_call(op, CONNECTOR, {"subject": "s", "body": "x" * 300}, base_url=BASE)
    monkeypatch.setenv("SPLICE_MAX_REQUEST_BYTES", "1000")  # read for every request
    prepare_call(op, CONNECTOR, {"subject": "s", "body": "x" * 300}, base_url=BASE)


def test_the_api_client_keeps_no_cookies():
    seen: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={}, headers={"set-cookie": "session=s3cr3t; Path=/"})

    op = CONNECTOR.operations["list_contacts"]
    with ApiClient(CONNECTOR, base_url=BASE, transport=httpx.MockTransport(api)) as client:
        for _ in range(2):
            client.send(op, prepare_call(op, CONNECTOR, {}, base_url=BASE))
        assert seen == [None, None]
        assert not client.client.cookies
        with pytest.raises(ValueError, match="keep no cookies"):
            client.client.cookies.set("session", "x")


def test_a_plain_http_connection_loads_no_ca_bundle_and_would_fail_closed():
    import ssl

    from splice.http.request import tls_context_for

    plain = tls_context_for("http://127.0.0.1:8080/api")
    assert plain.cert_store_stats()["x509_ca"] == 0  # trusts nobody ...
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname  # ... and checks
    assert tls_context_for("https://crm.example/api").cert_store_stats()["x509_ca"] > 0

    def trusted(client: ApiClient) -> int:  # (httpx keeps the context on its pool)
        return int(client.client._transport._pool._ssl_context.cert_store_stats()["x509_ca"])

    assert trusted(ApiClient(CONNECTOR, base_url="http://127.0.0.1:8080/api")) == 0
    # an auth flow may send its token requests to an https token URL: the full bundle then
    with_auth = ApiClient(CONNECTOR, base_url="http://127.0.0.1:8080/api",
                          auth=httpx.BasicAuth("u", "p"))
    assert trusted(with_auth) > 0


@pytest.mark.parametrize("url", ["https://crm.example/api/notes", "http://127.0.0.1:8123/sink",
                                 "http://[::1]:9000/a", "https://bücher.example/x"])
@pytest.mark.parametrize("params", [{}, {"a": "1", "b": "x y"}])
@pytest.mark.parametrize("headers", [
    {"Accept": "application/json", "Idempotency-Key": "splice-abc"},
    {"Accept": "application/json", "content-type": "application/vnd.api+json"},
    {},
])
def test_a_json_request_is_built_as_httpx_builds_it(url, params, headers):
    body = {"subject": "s", "amount": 1.5, "tags": ["a", "é"]}
    call = PreparedCall("POST", url, params, headers, json_body=body)
    ours = call.to_request()
    typed = any(k.lower() == "content-type" for k in headers)
    theirs = httpx.Request("POST", url, params=params or None, content=encode_json(body),
                           headers=headers if typed else
                           {**headers, "Content-Type": "application/json"})
    assert (ours.method, ours.url, ours.headers.raw) == \
        (theirs.method, theirs.url, theirs.headers.raw)
    assert ours.content == theirs.content == b"".join(ours.stream)


@pytest.mark.parametrize("header", ["Host", "content-length", "Transfer-Encoding"])
def test_a_request_naming_its_own_transport_headers_is_built_by_httpx(header):
    """httpx merges these with what it adds; splice leaves that to httpx."""
    call = PreparedCall("POST", "https://crm.example/api/notes", {}, {header: "1"},
                        json_body={"a": 1})
    expected = httpx.Request("POST", call.url, content=b'{"a":1}',
                             headers={header: "1", "Content-Type": "application/json"})
    assert call.to_request().headers.raw == expected.headers.raw


def test_a_call_template_builds_what_prepare_call_builds_and_each_call_owns_its_headers():
    note, tags = CONNECTOR.operations["create_note"], TAGS
    for op, payload in ((note, {"subject": "s", "body": "b"}),
                        (tags, {"contact_id": "c/1", "tags": ["a"]})):
        template = CallTemplate(op, CONNECTOR, BASE)
        for key in ("key-1", None, "key-2"):
            ours = template.prepare(payload, idempotency_key=key)
            assert ours == prepare_call(op, CONNECTOR, payload, base_url=BASE,
                                        idempotency_key=key)
            ours.headers["X-Mine"] = "1"  # the runner records what it sends: its own copy
    assert "X-Mine" not in template.prepare(payload).headers
    rendered = template.prepare(payload, rendered_headers={"Accept": "text/csv"})
    assert rendered.headers["Accept"] == "text/csv"
    with pytest.raises(RequestError, match="line break"):
        template.prepare(payload, rendered_headers={"X-Trace": "a\nb"})
    with pytest.raises(RequestError, match="path parameter 'contact_id' has no value"):
        template.prepare({"tags": ["a"]})
