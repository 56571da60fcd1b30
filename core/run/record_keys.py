"""Dedupe keys of polled records: how a trigger's ``key``/``version``/``filter`` turn a record
into the text stored in the ``seen`` table (or None to skip the record).

``FieldGetter`` reads a plain ``{{ record.a.b }}`` reference straight from the record;
``record_key_function`` builds the per-record function behind ``Plan.record_key``, with a fast
path for top-level scalar fields and the compiled templates for everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..mapping.templates import CompiledExpression


class FieldGetter:
    """A trigger key such as ``{{ record.id }}`` read straight from the record.

    Dedupe keys are computed for every polled record; for a plain field path this is
    several times cheaper than a template call. Anything else stays a compiled template.
    """

    def __init__(self, compiled: CompiledExpression, root: str, path: tuple[str, ...]):
        self.compiled, self.root, self.path = compiled, root, path

    def __call__(self, context: dict[str, Any]) -> Any:
        node = context.get(self.root)
        for part in self.path:
            if not isinstance(node, dict) or part not in node:
                return self.compiled(context)  # let the template explain what is missing
            node = node[part]
        if isinstance(node, (dict, list)) or node is None:
            return self.compiled(context)
        return node

    def references(self) -> Any:
        return self.compiled.references()


_SCALARS = frozenset({str, int, float, bool})


def record_key_function(key: CompiledExpression | FieldGetter | None,
                        version: CompiledExpression | FieldGetter | None,
                        filter: CompiledExpression | None) -> Callable[[Any], str | None]:
    """The function behind ``Plan.record_key``.

    It runs for every polled record, so the usual case (no filter, a key and a version that
    are top-level fields such as ``{{ record.id }}`` and ``{{ record.updated_at }}``) reads
    both fields straight from the record; anything else, including a missing or non-scalar
    field, goes through the templates (which explain what is missing).
    """

    def general(record: Any) -> str | None:
        ctx = {"record": record, "event": record}
        if filter is not None and not filter(ctx):
            return None
        if key is None:
            return None
        text = str(key(ctx))
        if version is not None:
            text = f"{text}@{version(ctx)}"
        return text

    def field_of(expr: Any) -> str | None:
        if isinstance(expr, FieldGetter) and len(expr.path) == 1:
            return expr.path[0]
        return None

    name = field_of(key)
    if filter is not None or name is None:
        return general
    if version is None:
        def key_only(record: Any) -> str | None:
            if type(record) is dict:
                value = record.get(name)
                if type(value) in _SCALARS:
                    return str(value)
            return general(record)
        return key_only
    version_name = field_of(version)
    if version_name is None:
        return general

    def key_and_version(record: Any) -> str | None:
        if type(record) is dict:
            value, stamp = record.get(name), record.get(version_name)
            if type(value) in _SCALARS and type(stamp) in _SCALARS:
                return f"{value}@{stamp}"
        return general(record)

    return key_and_version
