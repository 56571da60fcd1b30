"""Property-based tests: whatever a file or a template holds, only splice's own errors come out.

Random recipe and manifest documents (generated, and real ones mutated), random bytes, and
random templates from a grammar of Jinja expressions over the sandbox's globals and filters:
loading never raises anything but :class:`~splice.errors.SpliceError`, every render stays
inside the bounds (time, size), and no rendered value is a Python repr.

The suite runs a few hundred examples per property; a longer run::

    SPLICE_HYPOTHESIS_EXAMPLES=5000 pytest tests/test_hostile_properties.py
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splice.errors import DocumentError, SpliceError
from splice.mapping.bounds import json_size
from splice.mapping.templates import TemplateEngine
from splice.model.documents import (
    Document,
    _Loader,
    _node_bound,
    load_document,
    parse_document,
)
from splice.model.manifest import check_manifest
from splice.model.recipe import recipe_from_document

from .conftest import FIXTURES, ROOT

EXAMPLES = int(os.environ.get("SPLICE_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
REPR = re.compile(r"<(?:function|class|bound|built-in|generator|module|jinja2|splice)|"
                  r" at 0x[0-9a-f]+|object at|Namespace\(|<Namespace|dict_(?:items|keys|values)\(|"
                  r"LoopContext|Macro|Undefined|range\(\d")

# ---------------------------------------------------------------------------- documents

KEYS = st.sampled_from(["name", "trigger", "steps", "use", "with", "when", "for_each", "id",
                        "connection", "every", "max_pages", "max_items", "concurrency", "vars",
                        "operations", "path", "method", "input", "output", "base_url", "auth",
                        "type", "records", "pagination", "page_size", "<<", "1", "", "~"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=20),
                    st.sampled_from(["{{ trigger.x }}", "ghl_users.user_created",
                                     "invoice2go.create_client", "5m", "/a/../b", "GET"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), inner,
                                                 max_size=5)), max_leaves=30)
REAL = [p.read_text() for p in sorted((ROOT / "recipes").glob("*.yaml"))] + [
    (FIXTURES / "fakecrm.yaml").read_text(), (FIXTURES / "notes.yaml").read_text()]
YAML_CHARS = st.sampled_from(list("[]{}:,-&*!|>'\"#?%@`\\ \t\n\r") + ["\x00", "\x85", "\u2028",
                                                                    "\ufeff", "é", "a", "1"])


def _check(doc: Document) -> None:
    try:
        recipe_from_document(doc)
    except DocumentError:
        pass
    check_manifest(doc)  # a list of problems, never an exception


def _load(text: str, name: str) -> None:
    try:
        doc = parse_document(text, name)
    except DocumentError as exc:
        assert exc.problems and all(p.line >= 1 and p.column >= 1 for p in exc.problems)
        assert all("\n" not in str(p) for p in exc.problems)
        return
    _check(doc)


@SETTINGS
@given(VALUES, st.sampled_from(["yaml", "json"]))
def test_generated_documents_load_or_fail_with_a_located_error(value, kind):
    text = json.dumps(value) if kind == "json" else yaml.safe_dump(value, allow_unicode=True)
    _load(text, f"doc.{kind}")


@SETTINGS
@given(st.sampled_from(range(len(REAL))), st.lists(st.tuples(
    st.integers(0, 10_000), st.integers(0, 3), st.text(YAML_CHARS, max_size=6)), max_size=6))
def test_mutated_real_documents_load_or_fail_with_a_located_error(index, edits):
    text = REAL[index]
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut:]
    _load(text, "mutated.yaml")


def _values_counted(text: str) -> int:
    """The values (node events) a full pass over ``text`` meets before any error."""
    loader = _Loader(text)
    count = 0
    try:
        while loader.check_event():
            count += isinstance(loader.get_event(), yaml.NodeEvent)
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    return count


TOKENS = st.sampled_from(["- ", ": ", "? ", "\n", "\n  ", "\n- ", "\n? ", "\n: ", "&a ",
                          "*a ", "---\n", "--- ", "...\n", "!!str ", "<<: ", "|\n ", ">\n ",
                          "[a: b]", "{a: ", "x: ", "%YAML 1.1\n", '"q"', "'s'", ", ", "? - ",
                          ": - ", "- ? ", "- : ", "[?, :]", "{? : }"])


@SETTINGS
@given(st.lists(st.one_of(YAML_CHARS, TOKENS), max_size=80).map("".join))
def test_the_node_bound_holds_for_any_text(text):
    """A long document skips the counting pass when this bound is within the limit: it must
    never be below what the pass would count."""
    assert _values_counted(text) <= _node_bound(text)


@SETTINGS
@given(st.sampled_from(range(len(REAL))), st.lists(st.tuples(
    st.integers(0, 10_000), st.integers(0, 3), st.lists(st.one_of(YAML_CHARS, TOKENS),
                                                        max_size=4).map("".join)), max_size=6))
def test_the_node_bound_holds_for_mutated_real_documents(index, edits):
    text = REAL[index]
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut:]
    assert _values_counted(text) <= _node_bound(text)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(["r.yaml", "r.json"]))
def test_random_bytes_fail_with_a_located_error(tmp_path_factory, data, name):
    path: Path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(data)
    try:
        doc = load_document(path)
    except DocumentError as exc:
        assert str(exc).startswith(f"{path}:")
        return
    _check(doc)


# ---------------------------------------------------------------------------- templates

ENGINE = TemplateEngine()
FILTERS = sorted(ENGINE.filters)
CONTEXT = {"trigger": {"name": "Ada", "n": 3, "tags": ["a", "b"], "total": 12.5,
                       "nested": {"k": [1, {"x": None}]}, "empty": "", "big": "y" * 1000},
           "recipe": {"vars": {"limit": 5}}}

ATOMS = st.one_of(
    st.integers(-3, 12).map(str), st.sampled_from(["999999999", "4096", "2**64", "0.5", "-1"]),
    st.text("abcxyz %{}-,.05:>", max_size=6).map(lambda s: "'" + s + "'"),
    st.sampled_from(["trigger", "trigger.name", "trigger.tags", "trigger.nested",
                     "trigger.nested.k", "trigger.big", "trigger.total", "trigger['n']",
                     "recipe.vars", "range", "dict", "namespace", "none", "true", "[]",
                     "[1, 2, 3]", "{'a': 1}", "range(5)", "dict(a=1)", "namespace(a=1)",
                     "'x'", "''.join", "trigger.tags.index", "missing"]))
METHODS = st.sampled_from(["upper()", "lower()", "split()", "center(999999999)",
                           "center(5)", "format(1, 'x')", "join(['a', 'b'])",
                           "replace('', 'zz')", "zfill(99999999)", "items()", "keys()",
                           "get('a')", "ljust(3)", "title()", "format_map({'a': 1})"])
ARGS = st.lists(st.one_of(st.integers(-2, 999999999).map(str),
                          st.sampled_from(["'x'", "true", "none", "[1]", "'%r'", "range",
                                           "namespace", "attribute='a'", "'upper'",
                                           "'__class__'", "'{:>9}'", "trigger"])), max_size=2)


def _filter(expr: str, name: str, args: list[str]) -> str:
    return f"({expr})|{name}" + (f"({', '.join(args)})" if args else "")


EXPRS = st.recursive(ATOMS, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(FILTERS), ARGS).map(lambda t: _filter(*t)),
    st.tuples(inner, st.sampled_from(["+", "-", "*", "**", "%", "~", "//", "==", "and",
                                      "in"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    st.tuples(inner, METHODS).map(lambda t: f"({t[0]}).{t[1]}"),
    st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
    st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
), max_leaves=8)
TEMPLATES = st.one_of(
    EXPRS.map(lambda e: "{{ " + e + " }}"),
    st.tuples(EXPRS, EXPRS).map(lambda t: "x {{ " + t[0] + " }} y {{ " + t[1] + " }}"),
    st.tuples(EXPRS, EXPRS).map(
        lambda t: "{% for i in " + t[0] + " %}{{ " + t[1] + " }}{{ loop.index }}{% endfor %}"),
    st.tuples(EXPRS, EXPRS).map(
        lambda t: "{% set ns = namespace(v=" + t[0] + ") %}{% for i in range(30) %}"
                  "{% set ns.v = ns.v ~ " + t[1] + " %}{% endfor %}{{ ns.v|length }}"),
    st.tuples(EXPRS).map(lambda t: "{% macro m(a) %}{{ a }}{{ caller() if caller }}"
                                   "{% endmacro %}{{ m(" + t[0] + ") }}"),
    st.tuples(EXPRS, EXPRS).map(lambda t: "{% macro m() %}[{{ caller() }}]{% endmacro %}"
                                          "{% call m() %}{{ " + t[0] + " }}{% endcall %}"
                                          "{% filter upper %}{{ " + t[1] + " }}{% endfilter %}"),
    st.tuples(EXPRS).map(lambda t: "{% for x in " + t[0] + " recursive %}{{ loop(x) if x is "
                                   "iterable and x is not string else x }}{% endfor %}"),
)


def _walk(value: Any) -> None:
    """Data only: JSON types all the way down, and no string that is a Python repr."""
    if isinstance(value, str):
        assert len(value) <= ENGINE.environment.bounds.max_value
        assert not REPR.search(value), value[:200]
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key)
            _walk(item)
    elif isinstance(value, list):
        for item in value:
            _walk(item)
    else:
        assert value is None or type(value) in (bool, int, float), type(value)
        if type(value) is int:
            assert value.bit_length() <= ENGINE.environment.bounds.max_int_bits


@SETTINGS
@given(TEMPLATES)
def test_random_templates_give_data_or_splice_errors_inside_the_bounds(template):
    started = time.monotonic()
    try:
        value = ENGINE.compile_mapping({"f": template})(CONTEXT)
    except SpliceError as exc:
        message = str(exc)
        assert message.startswith("with")
        assert not REPR.search(message), message
        assert "y" * 20 not in message  # no value from the context
    else:
        _walk(value)
        bounds = ENGINE.environment.bounds
        assert json_size(value, bounds.max_request) <= bounds.max_request
        json.dumps(value)
    assert time.monotonic() - started < ENGINE.environment.bounds.timeout + 1.0
