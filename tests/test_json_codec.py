"""orjson where it is exact, the standard library where it is not: response bodies decode to
what ``json.loads`` returns, and the store's JSON reads back as what was written."""

from __future__ import annotations

import datetime as dt
import json
import math
import random

import pytest

from splice.http.body import decode_json
from splice.store.tables import json_dumps

BODIES = [
    b'{"data":[{"id":1,"amount":12.5,"tags":["a"],"ok":true,"none":null}],"total":1}',
    b'{"id":18446744073709551615}',  # the largest unsigned 64-bit integer
    b'{"id":18446744073709551616}',  # one more: orjson alone would make it a float
    b'{"id":-9223372036854775809}',  # below the signed 64-bit range
    b'[123456789012345678901234567890, 1]',
    b'{"a": [ 99999999999999999999 ]}',  # after a bracket and spaces
    b'{"phone":"12345678901234567890123"}',  # digits in a string: orjson is exact
    b'123456789012345678901234567890',  # a bare number
    b'{"x": NaN, "y": Infinity, "z": -Infinity}',
    b'{"big": 1e400}',
    '{"name": "Ünïcödé ✓"}'.encode("utf-16"),
    '{"name": "Ünïcödé ✓"}'.encode(),
    b'{"a":1,"a":2}',
    b'"\\ud83d\\ude00"',
    b' {"padded": 1.0e2} ',
    b'0.1',
]


@pytest.mark.parametrize("body", BODIES)
def test_response_bodies_decode_like_the_standard_library(body: bytes) -> None:
    expected, got = json.loads(body), decode_json(body)
    assert repr(got) == repr(expected)  # repr: 1 and 1.0 differ, nan is compared too


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b'{"a":}', b"\xff\xfe\x00"])
def test_invalid_bodies_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_json(body)


def test_random_documents_decode_exactly() -> None:
    rng = random.Random(7)

    def value(depth: int = 0) -> object:
        kind = rng.randrange(9 if depth < 4 else 6)
        if kind == 0:
            return rng.choice([0, -1, 2**63 - 1, -2**63, 2**64 - 1, 2**64, -2**64, 10**25])
        if kind == 1:
            return rng.choice([0.5, -1e-300, 1e300, 3.141592653589793, 1e16, 2.0**70])
        if kind == 2:
            return rng.choice(["", "x", "é\n\t\"\\", "12345678901234567890", "\u2028"])
        if kind == 3:
            return rng.choice([True, False, None])
        if kind in (4, 5):
            return rng.randrange(-10**6, 10**6)
        if kind == 6:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{i}": value(depth + 1) for i in range(rng.randrange(4))}

    for _ in range(500):
        doc = value()
        for text in (json.dumps(doc), json.dumps(doc, separators=(",", ":"))):
            assert repr(decode_json(text.encode())) == repr(json.loads(text))


def test_the_store_writes_json_that_reads_back() -> None:
    when = dt.datetime(2026, 5, 1, 10, 0, 0, 123, tzinfo=dt.UTC)
    value = {"when": when, "day": dt.date(2026, 5, 2), "set": {3}, "tuple": (1, "a"),
             "text": "é \" \\ \n", "float": 0.1, "big": 2**64, "nested": [{"a": None}]}
    back = json.loads(json_dumps(value))
    assert back == {"when": when.isoformat(), "day": "2026-05-02", "set": [3],
                    "tuple": [1, "a"], "text": "é \" \\ \n", "float": 0.1, "big": 2**64,
                    "nested": [{"a": None}]}
    assert json_dumps({"a": [1, 2]}) == '{"a":[1,2]}'  # compact, like before
    assert json_dumps({"u": "é"}) == '{"u":"é"}'  # UTF-8, not \\u escapes


@pytest.mark.parametrize("value,expected", [
    ({1: "a", "b": 2}, {"1": "a", "b": 2}),  # non-string keys: the standard library
    ({"n": 2**70}, {"n": 2**70}),  # beyond 64 bits: the standard library, exact
    ({"s": "\ud800"}, {"s": "\ud800"}),  # a lone surrogate
])
def test_values_orjson_cannot_write_fall_back(value: object, expected: object) -> None:
    assert json.loads(json_dumps(value)) == expected


def test_non_finite_floats_are_written_as_null() -> None:
    assert json.loads(json_dumps({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}
    with pytest.raises(TypeError):
        json_dumps({"x": object()})


@pytest.mark.parametrize("value", [
    {"ref": "rec-1", "name": "Ünïcödé ✓", "score": 5, "amount": 6.85, "tags": ["a", "b"],
     "nested": {"x": None, "y": True}},
    [1, 2.5, "x\n\"\\"], {"big": 2**70}, {1: "int key"}, "\u2028", 10**20,
])
def test_request_bodies_are_the_bytes_httpx_would_send(value: object) -> None:
    import httpx

    from splice.http.body import encode_json

    expected = httpx.Request("POST", "http://x.test/", json=value).content
    assert json.loads(encode_json(value)) == json.loads(expected)
    if not isinstance(value, dict) or all(isinstance(k, str) for k in value):
        assert encode_json(value) == expected  # byte for byte


def test_prepared_calls_send_json_with_its_content_type() -> None:
    from splice.http.request import PreparedCall

    call = PreparedCall("POST", "http://x.test/a", {}, {"Accept": "application/json"},
                        json_body={"a": math.nan, "b": "é"})
    request = call.to_request()
    assert request.headers["Content-Type"] == "application/json"
    assert request.content == '{"a":null,"b":"é"}'.encode()  # non-finite: null
    own = PreparedCall("POST", "http://x.test/a", {}, {"Content-Type": "application/vnd+json"},
                       json_body=[1]).to_request()
    assert own.headers["Content-Type"] == "application/vnd+json" and own.content == b"[1]"
