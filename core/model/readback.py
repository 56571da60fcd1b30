"""``verify:`` of a create/update operation: the get operation that reads the record back.

``verify: get_client`` (or the long form ``{operation, with, record, each, ignore}``) is
resolved when the manifest loads into a :class:`ReadBack`: every required input of the get
operation that its defaults do not fill gets a template, written (``with``) or inferred (the
write's input of the same name, else the ``id`` of the record the write returned). A name that
does not exist, a get operation that is not a read, or an input nobody can fill is a located
problem of the manifest. ``splice test --send --verify`` (:mod:`splice.run.verify`) renders
these templates with ``input`` (the write's input), ``output`` (its response) and ``index``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from .documents import Document
from .schema import did_you_mean, property_names, subschema


@dataclass(frozen=True)
class ReadBack:
    """How to read back what one write operation stored."""

    operation: str                       # the get operation's id (same connector)
    with_: dict[str, str] = field(default_factory=dict)  # its input: name -> template
    record: str = "."                    # the record inside the get's response
    each: str | None = None              # a list in the request body: one record per item
    ignore: tuple[str, ...] = ()         # body fields the API never returns


def _props(schema: Any) -> dict[str, Any]:
    return schema.get("properties", {}) if isinstance(schema, dict) else {}


def _record_of_write(op: dict[str, Any]) -> str | None:
    """Template path of the written record's id in a write's response, if it has one."""
    out = op.get("output")
    for path in (("data",), ("results",), ()):
        node = subschema(out, path) if path else out
        if isinstance(node, dict) and "id" in _props(node):
            return ".".join(("output", *path, "id"))
        if isinstance(node, dict) and "_id" in _props(node):
            return ".".join(("output", *path, "_id"))
    return None


def read_back(spec: Any, op_id: str, ops: dict[str, Any], doc: Document | None = None,
              problems: list[Problem] | None = None) -> ReadBack | None:
    """The :class:`ReadBack` of ``operations.<op_id>.verify`` (already schema-checked);
    problems are appended to ``problems`` (``doc`` locates them), None when it cannot be
    resolved."""
    base = ("operations", op_id, "verify")

    def add(path: tuple[str | int, ...], message: str) -> None:
        if problems is not None and doc is not None:
            problems.append(doc.problem((*base, *path), message))

    long = spec if isinstance(spec, dict) else {"operation": spec}
    wanted = str(long.get("operation"))
    write = ops[op_id]
    if write.get("method") == "GET":
        add((), "only a create or update operation (not a GET) is read back")
        return None
    get = ops.get(wanted)
    if get is None:
        add(("operation",) if isinstance(spec, dict) else (),
            f"unknown operation '{wanted}'{did_you_mean(wanted, ops)}")
        return None
    if get.get("method") != "GET":
        add(("operation",) if isinstance(spec, dict) else (),
            f"'{wanted}' is a {get.get('method')} operation; verify needs a read (GET)")
        return None
    given = dict(long.get("with") or {})
    get_props = _props(get.get("input"))
    for name in given:
        if name not in get_props:
            add(("with", name), f"'{wanted}' takes no input '{name}'"
                                f"{did_you_mean(name, get_props)}")
    templates: dict[str, str] = {}
    write_props = _props(write.get("input"))
    get_defaults = get.get("defaults") or {}
    required = get.get("input", {}).get("required", []) if isinstance(get.get("input"), dict) \
        else []
    for name in required:
        if name in given or name in get_defaults:
            continue
        if name in write_props:
            templates[name] = f"{{{{ input.{name} }}}}"
            continue
        found = _record_of_write(write)
        if found is None or long.get("each"):
            add((), f"cannot tell where the input '{name}' of '{wanted}' comes from; give it "
                    f"in `verify: {{operation: {wanted}, with: {{{name}: ...}}}}`")
            return None
        templates[name] = f"{{{{ {found} }}}}"
    templates.update({k: str(v) for k, v in given.items()})
    record = long.get("record")
    if record is None:
        record = "data" if "data" in property_names(get.get("output")) else "."
    elif record != "." and subschema(get.get("output"), tuple(record.split("."))) is None:
        add(("record",), f"'{record}' is not in the output of '{wanted}'")
    return ReadBack(operation=wanted, with_=templates, record=record, each=long.get("each"),
                    ignore=tuple(long.get("ignore") or ()))
