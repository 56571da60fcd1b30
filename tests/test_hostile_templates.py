"""Hostile templates: bounded in size, work and time; only data leaves them; errors hold no values.

The bombs the issue found run in process (each a clear error naming the field, fast) and
through the real CLI (``splice test --sample``, in its own capped process: exit 2, under 2 s
and 200 MB). ``splice validate`` compiles them without running them (no constant folding).
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest

from splice.errors import TemplateError
from splice.mapping.bounds import Bounds
from splice.mapping.templates import TemplateEngine

from .hostile import SECRET, measure

# template -> what the error says (each is refused before it can allocate or loop for long)
BOMBS = {
    "{{ 'x'|center(999999999) }}": "the result of |center would be longer than 1,000,000",
    "{{ 'x'|indent(999999999, true) }}": "the result of |indent would be longer",
    "{{ '%999999999d'|format(1) }}": "a formatted value would be longer",
    "{{ '{:>999999999}'.format(1) }}": "a formatted value would be longer",
    "{{ '{:.999999999f}'.format(1.5) }}": "a formatted value would be longer",
    "{{ '%999999999d' % 1 }}": "a formatted value would be longer",
    "{{ 'x'.center(999999999) }}": "a value built by center would be longer",
    "{{ 'x'.zfill(999999999) }}": "a value built by zfill would be longer",
    "{{ 'x' * 999999999 }}": "a repeated value would be longer",
    "{{ [1, 2] * 999999999 }}": "a repeated value would be longer",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}": "a string joined with ~ would be longer",
    "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s }}": "a value built with + would be longer",
    "{{ ((2**4096)**4096)**4096 }}": "a number would have more than 14,000 bits",
    "{{ 10 ** 99999999 }}": "a number would have more than 14,000 bits",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}":
        "ran more than 100,000 loop iterations and calls",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}":
        "ran more than 100,000 loop iterations and calls",
    "{% for i in range(99999) %}{{ 'x' * 999999 }}{% endfor %}":
        "the template wrote more than 10,000,000 characters",
    "{{ ['x' * 999999] * 1000 }}": "the value would be larger than 10,000,000 bytes as JSON",
    "{{ (['x' * 999999] * 1000) | join }}": "the result of |join would be longer",
    "{{ (['x' * 999999] * 1000) | string }}": "the value given to |string would be longer",
    "{{ (['x' * 999999] * 1000) | tojson }}": "to |tojson would be longer",
    "{{ ([[1] * 999999] * 1000) | sum(start=[]) }}": "the result of |sum would be longer",
    "{{ ('x' * 999999) | wordwrap(1) }}": "the result of |wordwrap would be longer",
    "{{ 'ab' | replace('', 'x' * 999999) }}": "a value built by replace would be longer",
    "{{ [1] | batch(999999999, 0) | list }}": "the result of |batch would be longer",
    "{{ (1).to_bytes(999999999, 'big') }}": "a value built by to_bytes would be longer",
    "{{ 'a\\tb'.expandtabs(999999999) }}": "a value built by expandtabs would be longer",
    "{% set ns = namespace(l=[]) %}{% for i in range(99999) %}"
    "{% set ns.l = ns.l + [('x' * 99999) ~ i] %}{% endfor %}": "built more than 20,000,000",
    "".join(f"{{% set a{i} = x[{i}:] %}}" for i in range(700)): "built more than 20,000,000",
    "{% set ns = namespace(n=0) %}{% for i in range(99999) %}{% set ns.n = x.count('ab') %}"
    "{% endfor %}": "the template ran longer than 1 s",
}

# template -> the kind of object the error names instead of printing its repr
REPRS = {
    "{{ range|string }}": "the value given to |string is a function or method, not data",
    "x {{ dict }}": "the value written as text is a class, not data",
    "{{ ''.join|string }}": "the value given to |string is a function or method, not data",
    "{{ namespace(a=1)|string }}": "the value given to |string is a namespace object, not data",
    "{{ '%r'|format(namespace) }}": "an argument of |format is a class, not data",
    "{{ '%s' % range }}": "a value formatted with % is a function or method, not data",
    "{{ '{!r}'.format(namespace(a=1)) }}": "is a namespace object, not data",
    "{{ 'a' ~ range }}": "is a function or method, not data",
    "{{ range }}": "the expression evaluates to a function or method, not to data",
    "{{ [range] }}": "the expression evaluates to a function or method, not to data",
    "{{ {'a': namespace()} }}": "the expression evaluates to a namespace object, not to data",
    "{{ range|upper }}": "the value given to |upper is a function or method, not data",
    "{{ [dict]|join(',') }}": "is a class, not data",
    "{{ range(3)|string }}": "the value given to |string is a range (use |list), not data",
    "{% for i in [1] %}{{ loop }}{% endfor %}": "the value written as text is the loop object",
    "{% for i in [1] %}{{ loop.cycle }}{% endfor %}": "is a function or method, not data",
    "{% macro m() %}{% endmacro %}{{ m|string }}": "is a macro, not data",
    "{{ dict(a=range)|tojson }}": "is a function or method, not data",
}


@pytest.fixture(scope="module")
def engine() -> TemplateEngine:
    return TemplateEngine()


@pytest.mark.parametrize("template", list(BOMBS))
def test_bombs_are_refused_in_process(engine, template):
    compiled = engine.compile_mapping({"f": template})
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        compiled({"x": "data" * 250_000})
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert message.startswith("with.f: ") and BOMBS[template] in message, message


@pytest.mark.parametrize("template", list(REPRS))
def test_only_data_leaves_a_template(engine, template):
    with pytest.raises(TemplateError) as caught:
        engine.compile_mapping({"f": template})({})
    message = str(caught.value)
    assert message.startswith("with.f: ") and REPRS[template] in message, message
    assert not re.search(r"0x[0-9a-f]{4,}|<function|<class|<bound|Namespace|object at", message)


def test_data_still_renders_as_before(engine):
    out = engine.compile_mapping({
        "a": "{{ range(3)|list }}", "b": "{{ (['x', 'y']|map('upper'))|join('-') }}",
        "c": "{{ '%05.1f|%s'|format(3.14159, 'ok') }}", "d": "{{ '{:>6}'.format('r') }}",
        "e": "{{ 'ab' * 3 ~ '!' }}", "f": "n={{ 2 ** 64 }}", "g": "{{ {'k': [1, 2]}|tojson }}",
        "h": "{% set ns = namespace(s='') %}{% for i in range(3) %}{% set ns.s = ns.s ~ i %}"
             "{% endfor %}{{ ns.s }}", "i": "{{ x.items()|list }}", "j": "{{ [1, None]|string }}",
        "k": "{{ 'a b c'.split()|length }}", "l": "{{ 'x'|center(9) }}"})({"x": {"k": 1}})
    assert out == {"a": [0, 1, 2], "b": "X-Y", "c": "003.1|ok", "d": "     r", "e": "ababab!",
                   "f": "n=18446744073709551616", "g": '{"k": [1, 2]}', "h": "012",
                   "i": [["k", 1]], "j": "[1, None]", "k": 3, "l": "    x    "}


def test_validate_never_runs_a_template(engine):
    started = time.monotonic()
    for template in BOMBS:
        engine.compile_mapping({"f": template})  # compiles, folds nothing
    assert time.monotonic() - started < 2.0


def test_bounds_have_overrides(monkeypatch):
    monkeypatch.setenv("SPLICE_TEMPLATE_MAX_VALUE", "10")
    monkeypatch.setenv("SPLICE_TEMPLATE_MAX_STEPS", "5")
    engine = TemplateEngine()
    assert engine.environment.bounds == Bounds(max_value=10, max_steps=5)  # type: ignore
    with pytest.raises(TemplateError, match="longer than 10 characters"):
        engine.compile_mapping({"f": "{{ 'x' * 11 }}"})({})
    with pytest.raises(TemplateError, match="more than 5 loop iterations"):
        engine.compile_mapping({"f": "{% for i in range(6) %}{% endfor %}"})({})
    assert engine.compile_mapping({"f": "{{ 'x' * 10 }}"})({}) == {"f": "x" * 10}


def test_templates_too_big_to_compile_are_refused(engine):
    with pytest.raises(TemplateError, match="longer than 20,000 characters"):
        TemplateEngine().compile_mapping({"f": "{{ " + " ~ ".join(["x"] * 6000) + " }}"})
    fresh = TemplateEngine()
    with pytest.raises(TemplateError, match="longer than 100,000 characters in all"):
        fresh.compile_mapping({f"f{i}": "{{ x" + str(i) + " }}" for i in range(2001)})
    again = TemplateEngine(bounds=Bounds(max_total=500))
    for _ in range(20):  # compiling the same text again (defaults, per event) costs nothing new
        again.compile_mapping({"a": "{{ connection.locationId }}"})
    with pytest.raises(TemplateError, match="nested too deeply"):
        TemplateEngine().compile_mapping({"f": "{% for a in x %}" * 25 + "{% endfor %}" * 25})
    with pytest.raises(TemplateError, match="nested too deeply"):
        TemplateEngine().compile_mapping({"f": "{{ " + "(" * 300 + "1" + ")" * 300 + " }}"})


# ------------------------------------------------------------------ errors never echo values

TRANSFORMS = {
    "upper": "{{ [1].index(trigger.secret|upper) }}",
    "lower": "{{ [1].index(trigger.secret.lower()) }}",
    "slice": "{{ [1].index(trigger.secret[1:]) }}",
    "split part": "{{ [1].index(trigger.secret.split('-')[1]) }}",
    "int() of a part": "{{ trigger.secret.split('-')[2] | int(base=10, default=none) + 1 }}",
    "dict key": "{{ {'a': 1}[trigger.secret.upper()] }}",
    "format": "{{ '%d' % trigger.secret[:-1] }}",
    "from_json": "{{ trigger.secret.title() | from_json }}",
    "attribute": "{{ trigger[trigger.secret.swapcase()] }}",
    "compare": "{{ trigger.secret.casefold() > 3 }}",
}


def forms(secret: str) -> list[str]:
    """A secret and what a template can make of it (every 8-character window too)."""
    found = {secret, secret.upper(), secret.lower(), secret.swapcase(), secret.title(),
             secret[1:], secret[:-1], base64.b64encode(secret.encode()).decode()}
    found.update(p for p in secret.split("-") if len(p) >= 6)
    found.update(secret.lower()[i:i + 8] for i in range(len(secret) - 7))
    return sorted(found)


def assert_no_secret(text: str, secret: str = SECRET) -> None:
    lowered = text.lower()
    for form in forms(secret):
        assert form.lower() not in lowered, f"{form!r} leaked: {text[:300]!r}"


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_errors_never_hold_a_transformed_secret(engine, name):
    with pytest.raises(TemplateError) as caught:
        engine.compile_mapping({"f": TRANSFORMS[name]})({"trigger": {"secret": SECRET}})
    assert str(caught.value).startswith("with.f: ")
    assert_no_secret(str(caught.value))
    assert_no_secret(str(caught.value.hint or ""))


# ------------------------------------------------------------------ the real CLI

CLI_BOMBS = [
    "{{ 'x'|center(999999999) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{{ ((2**4096)**4096)**4096 }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ range|string }}",
    "{% set ns = namespace(l=[]) %}{% for i in range(99999) %}"
    "{% set ns.l = ns.l + [('x' * 99999) ~ i] %}{% endfor %}",
]


def _recipe(tmp_path: Path, template: str) -> Path:
    path = tmp_path / "bomb.yaml"
    quoted = template.replace("'", "''")
    path.write_text("name: bomb\ntrigger: {use: ghl_users.user_created, connection: my-hl}\n"
                    "steps:\n  - use: invoice2go.search_clients\n    connection: my-i2g\n"
                    f"    with:\n      email: '{quoted}'\n")
    return path


@pytest.fixture
def sample_connections() -> None:
    from splice.plugins import get_registry
    from splice.store.database import Store

    registry, store = get_registry(), Store.open()
    for name, cid in (("my-hl", "ghl_users"), ("my-i2g", "invoice2go")):
        connector = registry.connectors[cid]
        store.put_connection(name, connector=cid, auth_type="oauth2",
                             config={"scopes": connector.scopes, "fields": {
                                 "locationId": "l1", "companyId": "c1", "account_id": "a1"}},
                             secret={"access_token": "x", "refresh_token": "y"})
    store.close()


@pytest.mark.parametrize("template", CLI_BOMBS)
def test_cli_refuses_each_bomb_in_under_2s_and_200mb(sample_connections, tmp_path, template):
    path = _recipe(tmp_path, template)
    checked = measure("validate", str(path))
    assert checked.code == 0, checked.stderr  # compiled, never run
    result = measure("test", str(path), "--sample")
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    failure = [line for line in result.stdout.splitlines() if "steps[0].with" in line]
    assert len(failure) == 1, result.stdout
    assert failure[0].startswith(f"{path}:7:14: steps[0].with.email: "), result.stdout
    assert "nothing was sent" in result.stdout
    assert not re.search(r"0x[0-9a-f]{6,}|<function", result.stdout)
    assert checked.cpu < 2.0 and result.cpu < 2.0, (checked, result)  # CPU: a shared machine
    assert checked.seconds < 10 and result.seconds < 10, (checked, result)
    assert checked.rss_mb < 200 and result.rss_mb < 200, (checked, result)
