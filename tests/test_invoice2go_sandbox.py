"""The reusable sandbox OAuth server and the Invoice2go sandbox (over loopback HTTP)."""

from __future__ import annotations

import base64
import contextlib
import random
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from splice.sandbox import (
    AuthFailure,
    OAuthClient,
    OAuthFailure,
    OAuthServer,
    SandboxConfig,
    pkce_challenge,
    redirect_uri_matches,
    serve,
)
from splice_connectors.invoice2go.sandbox import create_app

# --------------------------------------------------------------------------------------------
# splice.sandbox.oauth_server, driven directly
# --------------------------------------------------------------------------------------------

REDIRECT = "http://127.0.0.1/callback"
SCOPES = {"a:read", "a:write", "b:read"}
VERIFIER = "v" * 50


class FakeClock:
    def __init__(self, now: float = 1_777_629_600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_server(clock: FakeClock | None = None, **kw) -> OAuthServer:
    client = OAuthClient("cid", "secret", [REDIRECT, "https://app.example/cb"], set(SCOPES))
    return OAuthServer(clients=[client], clock=clock or FakeClock(), access_ttl=3600,
                       refresh_ttl=86400, rng=random.Random(7), **kw)


def basic(cid: str = "cid", secret: str = "secret") -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


def get_code(server: OAuthServer, *, redirect: str = "http://127.0.0.1:5555/callback",
             scope: str | None = None, pkce: bool = True, state: str = "xyz") -> str:
    params = {"response_type": "code", "client_id": "cid", "redirect_uri": redirect,
              "state": state}
    if scope:
        params["scope"] = scope
    if pkce:
        params.update(code_challenge=pkce_challenge(VERIFIER), code_challenge_method="S256")
    url = server.authorize(params, {"account_id": "24379237"})
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(redirect + "?")
    assert query["state"] == [state]
    return query["code"][0]


def exchange(server: OAuthServer, code: str, *, verifier: str | None = VERIFIER,
             redirect: str = "http://127.0.0.1:5555/callback") -> dict:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    if verifier is not None:
        form["code_verifier"] = verifier
    return server.token(form, basic())


def test_code_flow_issues_tokens_with_subject_and_checks_scopes():
    server = make_server()
    body = exchange(server, get_code(server, scope="a:read b:read"))
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "a:read b:read" and body["account_id"] == "24379237"
    info = server.check(f"Bearer {body['access_token']}", ["a:read"])
    assert info.subject == {"account_id": "24379237"} and info.client_id == "cid"
    with pytest.raises(AuthFailure) as exc:
        server.check(f"Bearer {body['access_token']}", ["a:write"])
    assert exc.value.kind == "insufficient_scope" and exc.value.scope == "a:write"
    assert exc.value.www_authenticate() == 'Bearer error="insufficient_scope", scope="a:write"'
    for header in (None, "Bearer", "Basic abc", "Bearer nope"):
        with pytest.raises(AuthFailure) as exc:
            server.check(header, [])
        assert exc.value.kind == "invalid_token" and exc.value.status == 401


def test_pkce_mismatch_and_missing_verifier_are_invalid_grant():
    server = make_server()
    with pytest.raises(OAuthFailure) as exc:
        exchange(server, get_code(server), verifier="w" * 50)
    assert (exc.value.status, exc.value.error) == (400, "invalid_grant")
    with pytest.raises(OAuthFailure) as exc:
        exchange(server, get_code(server), verifier=None)
    assert exc.value.error == "invalid_grant"


def test_code_is_single_use_and_replay_revokes_its_tokens():
    server = make_server()
    code = get_code(server)
    body = exchange(server, code)
    with pytest.raises(OAuthFailure) as exc:
        exchange(server, code)
    assert exc.value.error == "invalid_grant"
    with pytest.raises(AuthFailure):
        server.check(f"Bearer {body['access_token']}", [])


def test_expired_code_and_redirect_uri_mismatch():
    clock = FakeClock()
    server = make_server(clock)
    code = get_code(server)
    clock.now += 601
    with pytest.raises(OAuthFailure) as exc:
        exchange(server, code)
    assert exc.value.error == "invalid_grant" and "expired" in exc.value.description
    with pytest.raises(OAuthFailure) as exc:
        exchange(server, get_code(server), redirect="http://127.0.0.1:6666/callback")
    assert exc.value.error == "invalid_grant"


def test_refresh_rotates_and_old_refresh_token_is_dead():
    clock = FakeClock()
    server = make_server(clock)
    first = exchange(server, get_code(server))
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
            "client_id": "cid", "client_secret": "secret"}
    second = server.token(form, None)  # client credentials in the body this time
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    with pytest.raises(OAuthFailure) as exc:
        server.token(form, None)
    assert exc.value.error == "invalid_grant"
    third = server.token({**form, "refresh_token": second["refresh_token"]}, None)
    assert server.check(f"Bearer {third['access_token']}", ["a:write"])


def test_refresh_with_scope_subset_narrows_access_only():
    server = make_server()
    first = exchange(server, get_code(server))
    narrow = server.token({"grant_type": "refresh_token", "scope": "a:read",
                           "refresh_token": first["refresh_token"]}, basic())
    assert narrow["scope"] == "a:read"
    with pytest.raises(AuthFailure):
        server.check(f"Bearer {narrow['access_token']}", ["a:write"])
    wide = server.token({"grant_type": "refresh_token",
                         "refresh_token": narrow["refresh_token"]}, basic())
    assert wide["scope"] == "a:read a:write b:read"
    with pytest.raises(OAuthFailure) as exc:
        server.token({"grant_type": "refresh_token", "scope": "c:admin",
                      "refresh_token": wide["refresh_token"]}, basic())
    assert exc.value.error == "invalid_scope"


def test_client_authentication_and_grant_type_errors():
    server = make_server()
    code = get_code(server)
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": "http://127.0.0.1:5555/callback", "code_verifier": VERIFIER}
    with pytest.raises(OAuthFailure) as exc:
        server.token(form, basic(secret="wrong"))
    assert (exc.value.status, exc.value.error) == (401, "invalid_client")
    assert exc.value.headers["WWW-Authenticate"].startswith("Basic")
    assert "wrong" not in exc.value.description
    with pytest.raises(OAuthFailure) as exc:
        server.token({"grant_type": "password"}, basic())
    assert exc.value.error == "unsupported_grant_type"
    assert server.token(form, basic())["access_token"]


def test_loopback_redirect_matching():
    assert redirect_uri_matches(REDIRECT, "http://127.0.0.1:49152/callback")
    assert redirect_uri_matches(REDIRECT, REDIRECT)
    assert redirect_uri_matches("http://[::1]/cb", "http://[::1]:8000/cb")
    assert not redirect_uri_matches(REDIRECT, "http://127.0.0.1:49152/other")
    assert not redirect_uri_matches(REDIRECT, "http://localhost:49152/callback")
    assert not redirect_uri_matches(REDIRECT, "https://127.0.0.1:49152/callback")
    assert not redirect_uri_matches("https://app.example/cb", "https://app.example:444/cb")
    server = make_server()
    with pytest.raises(OAuthFailure) as exc:
        server.authorize({"response_type": "code", "client_id": "cid",
                          "redirect_uri": "http://evil.example/callback"}, {})
    assert (exc.value.status, exc.value.error) == (400, "invalid_request")


def test_authorize_errors_redirect_with_state():
    server = make_server()
    base = {"client_id": "cid", "redirect_uri": REDIRECT, "state": "s1"}
    url = server.authorize({**base, "response_type": "token"}, {})
    assert parse_qs(urlsplit(url).query)["error"] == ["unsupported_response_type"]
    url = server.authorize({**base, "response_type": "code", "scope": "a:read z:admin"}, {})
    query = parse_qs(urlsplit(url).query)
    assert query["error"] == ["invalid_scope"] and query["state"] == ["s1"]
    url = server.authorize({**base, "response_type": "code", "code_challenge": "x" * 43,
                            "code_challenge_method": "plain"}, {})
    assert parse_qs(urlsplit(url).query)["error"] == ["invalid_request"]
    assert "error=access_denied" in server.deny(base)


def test_revoke_refresh_token_revokes_its_access_tokens():
    server = make_server()
    body = exchange(server, get_code(server))
    server.revoke({"token": "unknown-token"}, basic())  # not an error (RFC 7009)
    server.revoke({"token": body["refresh_token"], "token_type_hint": "refresh_token"},
                  basic())
    with pytest.raises(AuthFailure):
        server.check(f"Bearer {body['access_token']}", [])
    with pytest.raises(OAuthFailure) as exc:
        server.token({"grant_type": "refresh_token",
                      "refresh_token": body["refresh_token"]}, basic())
    assert exc.value.error == "invalid_grant"


def test_expire_access_tokens_and_persistence_roundtrip():
    clock = FakeClock()
    server = make_server(clock)
    body = exchange(server, get_code(server))
    saved = server.to_json()
    assert body["access_token"] not in repr(saved) and body["refresh_token"] not in repr(saved)
    server.expire_access_tokens()
    with pytest.raises(AuthFailure) as exc:
        server.check(f"Bearer {body['access_token']}", [])
    assert "expired" in exc.value.description
    restored = make_server(clock)
    restored.load_json(saved)
    assert restored.check(f"Bearer {body['access_token']}", ["b:read"]).subject["account_id"]
    refreshed = restored.token({"grant_type": "refresh_token",
                                "refresh_token": body["refresh_token"]}, basic())
    assert refreshed["access_token"]


# --------------------------------------------------------------------------------------------
# The Invoice2go sandbox over real loopback HTTP
# --------------------------------------------------------------------------------------------

CALLBACK = "http://127.0.0.1:8765/callback"
ACC = "/v1/accounts/24379237"


def _app(**kw) -> Starlette:
    return create_app(SandboxConfig(**kw))


def connect(http: httpx.Client, scope: str | None = None) -> dict:
    """Auto-approved authorization code flow with PKCE; returns the token response."""
    params = {"response_type": "code", "client_id": "splice-demo", "redirect_uri": CALLBACK,
              "state": "st", "code_challenge": pkce_challenge(VERIFIER),
              "code_challenge_method": "S256"}
    if scope:
        params["scope"] = scope
    r = http.get("/oauth/authorize", params=params)
    assert r.status_code == 302
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    r = http.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": CALLBACK, "code_verifier": VERIFIER},
                  auth=("splice-demo", "splice-demo-secret"))
    assert r.status_code == 200, r.text
    return r.json()


@contextlib.contextmanager
def sandbox(scope: str | None = None, **kw) -> Iterator[tuple[httpx.Client, dict]]:
    with serve(_app(**kw)) as base, httpx.Client(base_url=base, timeout=5) as http:
        tokens = connect(http, scope)
        http.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        yield http, tokens


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post("/oauth/token", data={"grant_type": "refresh_token",
                                           "refresh_token": refresh_token,
                                           "client_id": "splice-demo",
                                           "client_secret": "splice-demo-secret"},
                     headers={"Authorization": ""})


def test_manual_approval_code_flow_with_pkce_and_rotation():
    with serve(_app(auto_approve=False)) as base, httpx.Client(base_url=base) as http:
        params = {"response_type": "code", "client_id": "splice-demo",
                  "redirect_uri": CALLBACK, "state": "abc",
                  "scope": "accounts:read invoices:read",
                  "code_challenge": pkce_challenge(VERIFIER), "code_challenge_method": "S256"}
        page = http.get("/oauth/authorize", params=params)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        form = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        assert form == params
        r = http.post("/oauth/authorize", data={**form, "approve": "yes",
                                                "account_id": "24379237"})
        assert r.status_code == 302
        location = urlsplit(r.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
        query = parse_qs(location.query)
        assert query["state"] == ["abc"]
        token_form = {"grant_type": "authorization_code", "code": query["code"][0],
                      "redirect_uri": CALLBACK, "code_verifier": VERIFIER}
        r = http.post("/oauth/token", data=token_form, auth=("splice-demo", "splice-demo-secret"))
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        first = r.json()
        assert first["account_id"] == "24379237" and first["expires_in"] == 3600
        assert first["scope"] == "accounts:read invoices:read"
        # rotation: a fresh pair, and the old refresh token is dead at once
        second = refresh(http, first["refresh_token"]).json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["scope"] == first["scope"] and second["account_id"] == "24379237"
        r = refresh(http, first["refresh_token"])
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        # the code is single-use; replaying it revokes the whole grant (RFC 6749 §4.1.2)
        r = http.post("/oauth/token", data=token_form, auth=("splice-demo", "splice-demo-secret"))
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        assert refresh(http, second["refresh_token"]).json()["error"] == "invalid_grant"
        # denial redirects with access_denied and the state
        r = http.post("/oauth/authorize", data={**form, "approve": "no"})
        assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["access_denied"]
        # unknown redirect URI: 400, never a redirect
        r = http.get("/oauth/authorize", params={**params, "redirect_uri": "http://evil/cb"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_token_errors_401_and_403_shapes():
    with sandbox("accounts:read invoices:read") as (http, tokens):
        r = http.post(f"{ACC}/clients", json={"name": "X"})
        assert r.status_code == 403
        err = r.json()["error"]
        assert err["code"] == "insufficient_scope" and "clients:write" in err["message"]
        assert r.headers["www-authenticate"] == \
            'Bearer error="insufficient_scope", scope="clients:write"'
        assert err["request_id"] == r.headers["x-request-id"]
        assert http.get(f"{ACC}/tags").status_code == 200  # invoices:read is enough
        r = http.get(f"{ACC}/invoices", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert http.post("/__test__/expire-tokens").status_code == 200
        r = http.get(ACC)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
        renewed = refresh(http, tokens["refresh_token"]).json()
        r = http.get(ACC, headers={"Authorization": f"Bearer {renewed['access_token']}"})
        assert r.status_code == 200 and r.json()["data"]["name"] == "Gotham Handyman Co"
        r = http.post("/oauth/token", data={"grant_type": "refresh_token",
                                            "refresh_token": renewed["refresh_token"]},
                      auth=("splice-demo", "wrong"))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_other_accounts_are_not_found_and_bad_bodies_are_rejected():
    with sandbox() as (http, _):
        r = http.get("/v1/accounts/31415926/clients")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = http.post(f"{ACC}/clients", content=b"name=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415
        assert r.json()["error"]["code"] == "unsupported_media_type"
        r = http.post(f"{ACC}/clients", content=b"{nope",
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        assert http.get(f"{ACC}/invoices", params={"limit": 101}).status_code == 400


def test_pagination_across_pages_keeps_filters_and_loses_nothing():
    with sandbox() as (http, _):
        state = http.get("/__test__/state").json()
        expected = [i["id"] for i in state["invoices"]]
        seen, cursor, pages = [], None, 0
        while pages < 10:
            r = http.get(f"{ACC}/invoices", params={"limit": 25, **(
                {"cursor": cursor} if cursor else {})})
            body = r.json()
            seen += [i["id"] for i in body["data"]]
            pages += 1
            cursor = body["pagination"]["next_cursor"]
            assert body["pagination"]["has_more"] is (cursor is not None)
            if cursor is None:
                break
        assert pages == 3 and seen == expected and len(set(seen)) == 60

        paid = [i["id"] for i in state["invoices"] if i["document_status"] == "fully_paid"]
        r = http.get(f"{ACC}/invoices", params={"document_status": "fully_paid", "limit": 10})
        got = [i["id"] for i in r.json()["data"]]
        cursor = r.json()["pagination"]["next_cursor"]
        for _ in range(10):
            if cursor is None:
                break
            r = http.get(f"{ACC}/invoices", params={"cursor": cursor, "limit": 10})
            got += [i["id"] for i in r.json()["data"]]
            cursor = r.json()["pagination"]["next_cursor"]
        assert got == paid and len(paid) > 20

        r = http.get(f"{ACC}/invoices", params={"cursor": "garbage"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor"
        newest = state["invoices"][-1]["updated_at"]
        r = http.get(f"{ACC}/invoices", params={"updated_since": newest})
        assert [i["id"] for i in r.json()["data"]] == [expected[-1]]


def test_idempotent_create_replays_and_conflicts():
    with sandbox() as (http, _):
        key = {"Idempotency-Key": "create-acme-1"}
        first = http.post(f"{ACC}/clients", json={"name": "Acme"}, headers=key)
        again = http.post(f"{ACC}/clients", json={"name": "Acme"}, headers=key)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json() and again.headers["location"] == \
            first.headers["location"]
        conflict = http.post(f"{ACC}/clients", json={"name": "Acme Corp"}, headers=key)
        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "idempotency_conflict"
        r = http.get(f"{ACC}/clients", params={"limit": 100})
        assert [c["name"] for c in r.json()["data"]].count("Acme") == 1


def test_invoice_totals_payments_and_status_lifecycle():
    with sandbox() as (http, _):
        body = {
            "name": "Walk-in customer", "document_status": "sent", "document_number": "A-1",
            "discount_type": "percentage", "discount_value": 5, "withholding_tax_rate": 10,
            "items": [
                {"description": "Repair", "qty": 3, "unit_price": 19.99,
                 "discount_type": "percentage", "discount_percentage": 10,
                 "withholding_tax_applies": True,
                 "applied_taxes": [{"name": "TAX", "rate": 8}]},
                {"description": "Install", "qty": 2.5, "unit_price": 40,
                 "discount_type": "amount", "discount_amount": 5,
                 "applied_taxes": [{"name": "TAX", "rate": 8}, {"name": "CITY", "rate": 1.5}]},
                {"description": "Parts", "qty": 1.3333, "unit_price": 7.5,
                 "withholding_tax_applies": True}]}
        r = http.post(f"{ACC}/invoices", json=body)
        assert r.status_code == 201, r.text
        inv = r.json()["data"]
        assert [i["amount"] for i in inv["items"]] == [53.97, 95, 10]
        assert [i["discount_amount"] for i in inv["items"]] == [6, 5, 0]
        taxes = {t["name"]: (t["sub_total"], t["total"]) for t in inv["tax_totals"]}
        assert taxes == {"TAX": (148.97, 11.92), "CITY": (95, 1.43)}  # 1.425 rounds half-up
        assert (inv["subtotal_amount"], inv["total_tax_amount"], inv["discount_amount"],
                inv["withholding_tax_amount"], inv["total_amount"]) == \
            (158.97, 13.35, 7.95, 6.4, 157.97)
        assert inv["balance_due_amount"] == 157.97 and inv["document_status"] == "sent"
        assert inv["items"][0]["applied_taxes"][0]["tax_id"]  # assigned by the server

        url = f"{ACC}/invoices/{inv['id']}"
        r = http.post(f"{url}/payments", json={"amount": 100, "method": "card"})
        assert r.status_code == 201
        assert (r.json()["data"]["document_status"], r.json()["data"]["balance_due_amount"]) \
            == ("partially_paid", 57.97)
        r = http.post(f"{url}/payments", json={"amount": 57.97, "method": "cash"})
        paid = r.json()["data"]
        assert paid["document_status"] == "fully_paid" and paid["balance_due_amount"] == 0
        assert len({p["transaction_id"] for p in paid["payments"]}) == 2
        r = http.patch(url, json={"items": [{"description": "x", "qty": 1, "unit_price": 1}]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"
        r = http.patch(url, json={"comment": "Paid in full", "tags": ["Done"]})
        assert r.status_code == 200 and r.json()["data"]["tags"] == ["done"]
        r = http.patch(f"{ACC}/invoices/{inv['id']}", json={"document_status": "fully_paid"})
        assert r.status_code == 422
        r = http.post(f"{ACC}/invoices", json={**body, "document_number": "A-1"})
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "duplicate_document_number"
        assert http.delete(url).status_code == 409


def test_tag_normalisation_and_validation_details():
    with sandbox() as (http, _):
        clients = http.get(f"{ACC}/clients", params={"limit": 100}).json()["data"]
        planet = next(c for c in clients if c["name"] == "Daily Planet")
        r = http.patch(f"{ACC}/clients/{planet['id']}",
                       json={"tags": ["  Summer Sale ", "VIP", "vip", "Media"]})
        assert r.status_code == 200
        assert r.json()["data"]["tags"] == ["summer sale", "vip", "media"]
        r = http.get(f"{ACC}/clients", params={"tag": " SUMMER SALE"})
        assert [c["id"] for c in r.json()["data"]] == [planet["id"]]
        r = http.patch(f"{ACC}/clients/{planet['id']}",
                       json={"tags": ["ok", "a,b", "   ", "x" * 51, 7]})
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "validation_failed"
        assert [d["field"] for d in err["details"]] == ["tags[1]", "tags[2]", "tags[3]",
                                                         "tags[4]"]
        r = http.patch(f"{ACC}/clients/{planet['id']}",
                       json={"tags": [f"t{i}" for i in range(21)]})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "tags"
        r = http.post(f"{ACC}/invoices", json={"name": "X", "items": [{"qty": 0}]})
        fields = {d["field"] for d in r.json()["error"]["details"]}
        assert {"items[0].qty", "items[0].description", "items[0].unit_price"} <= fields


def test_metrics_push_updates_in_place_with_meta_counts():
    metric = {"source": "ghl.social_planner", "key": "posts.published", "value": 10,
              "period_start": "2026-06-01", "period_end": "2026-06-30",
              "dimensions": {"platform": "facebook"}, "tags": ["Social"]}
    other = {**metric, "key": "posts.failed", "value": 1, "external_id": "loc:2026-06:failed"}
    with sandbox() as (http, _):
        url = f"{ACC}/insights/metrics"
        r = http.post(url, json={"metrics": [metric, other]})
        assert r.status_code == 200 and r.json()["meta"] == {"created": 2, "updated": 0,
                                                              "unchanged": 0}
        created = r.json()["data"]
        assert created[0]["tags"] == ["social"] and "account_id" not in created[0]
        http.post("/__test__/advance-clock", json={"seconds": 60})
        r = http.post(url, json={"metrics": [{**metric, "value": 12}, other]})
        assert r.json()["meta"] == {"created": 0, "updated": 1, "unchanged": 1}
        updated, same = r.json()["data"]
        assert updated["id"] == created[0]["id"] and updated["value"] == 12
        assert updated["updated_at"] > created[0]["updated_at"]
        assert same == created[1]
        r = http.post(url, json={"metrics": [metric, {**metric, "value": 3},
                                             {**metric, "key": "Bad Key", "value": "x"}]})
        assert r.status_code == 422
        fields = [d["field"] for d in r.json()["error"]["details"]]
        assert fields == ["metrics[2].key", "metrics[2].value", "metrics[1]"]
        r = http.get(url, params={"source": "ghl.social_planner", "period_from": "2026-06-15"})
        assert {m["id"] for m in r.json()["data"]} == {c["id"] for c in created}
        assert http.delete(f"{url}/{created[1]['id']}").status_code == 204
        assert http.get(f"{url}/{created[1]['id']}").status_code == 404


def test_rate_limit_429_with_retry_after_and_injected_failures():
    with sandbox(rate_limit=(5, 60)) as (http, _):
        for n in range(5):
            r = http.get(ACC)
            assert r.status_code == 200
            assert r.headers["x-ratelimit-remaining"] == str(4 - n)
        r = http.get(ACC)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-remaining"] == "0" and r.headers["x-ratelimit-reset"]
        http.post("/__test__/advance-clock", json={"seconds": 61})
        assert http.get(ACC).status_code == 200
        http.post("/__test__/fail-next", json={"count": 1, "status": 503, "retry_after": 2})
        r = http.get(ACC)
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == "unavailable"
        assert http.get(ACC).status_code == 200


def test_state_persists_across_app_instances(tmp_path):
    path = tmp_path / "i2g.json"
    with sandbox(state_path=path) as (http, tokens):
        created = http.post(f"{ACC}/clients", json={"name": "Persisted Co"}).json()["data"]
        rotated = refresh(http, tokens["refresh_token"]).json()
    assert path.exists() and rotated["refresh_token"] not in path.read_text()
    with serve(_app(state_path=path)) as base, httpx.Client(base_url=base) as http:
        auth = {"Authorization": f"Bearer {rotated['access_token']}"}
        r = http.get(f"{ACC}/clients/{created['id']}", headers=auth)
        assert r.status_code == 200 and r.json()["data"]["name"] == "Persisted Co"
        assert refresh(http, tokens["refresh_token"]).status_code == 400  # rotated away
        assert refresh(http, rotated["refresh_token"]).status_code == 200
        fresh = http.post(f"{ACC}/clients", json={"name": "Second"}, headers=auth).json()
        assert fresh["data"]["id"] != created["id"]
    first = create_app(SandboxConfig()).state.sandbox.store.to_json()
    again = create_app(SandboxConfig()).state.sandbox.store.to_json()
    assert first == again  # the seed is deterministic
