"""Samples generated from output schemas, written into a manifest's text.

``splice connectors check PATH --add-samples`` uses this for every operation that has no
``sample``: the sample is :func:`splice.model.examples.example` of the output schema (which
takes the spec's ``examples`` wherever the schema carries them, as imported manifests do),
kept only when it validates against that schema, and inserted as YAML at the end of the
operation's block. The rest of the file (comments, order, layout) is left as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model.documents import load_document
from ..model.examples import example
from ..model.schema import validator_for
from ..openapi.writer import dump_manifest

__all__ = ["add_samples", "generated_sample"]


def generated_sample(output: Any, records: str | None = None) -> Any | None:
    """An example body for ``output`` that validates, else None."""
    for required_only in (False, True):
        value = example(output, required_only=required_only)
        if records and records != ".":
            value = _with_record(value, output, records)
        if not list(validator_for(output).iter_errors(value)):
            return value
    return None


def _with_record(value: Any, output: Any, records: str) -> Any:
    """Make sure the list at ``records`` holds one record (a list sample needs one)."""
    node, schema = value, output
    parts = records.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict):
            return value
        schema = (schema.get("properties") or {}).get(part, {}) if isinstance(schema, dict) \
            else {}
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, dict) and not node.get(last):
        sub = (schema.get("properties") or {}).get(last, {}) if isinstance(schema, dict) else {}
        items = sub.get("items", {}) if isinstance(sub, dict) else {}
        node[last] = [example(items)]
    return value


def add_samples(path: Path, samples: dict[str, Any] | None = None) -> list[str]:
    """Insert a sample into every operation of ``path`` that has none: the one ``samples``
    gives (e.g. a body a sandbox answered), else one generated from the output schema.

    Returns the ids of the operations that got one (a sample that does not validate is
    never written: the operation stays a warning of ``connectors check``).
    """
    doc = load_document(path)
    ops: dict[str, Any] = (doc.data or {}).get("operations") or {}
    lines = Path(path).read_text("utf-8").splitlines(keepends=True)
    starts = sorted((doc.where(("operations", op_id), key=True)[0], op_id) for op_id in ops)
    top_keys = sorted(doc.where((k,), key=True)[0] for k in doc.data
                      if k != "operations" and isinstance(k, str))
    inserts: list[tuple[int, str]] = []
    added = []
    for index, (line, op_id) in enumerate(starts):
        op = ops[op_id]
        if "sample" in op:
            continue
        if samples and op_id in samples:
            sample = samples[op_id]   # None is a real sample: a 204 answers no body
            if list(validator_for(op.get("output")).iter_errors(sample)):
                continue
        else:
            sample = generated_sample(op.get("output"), op.get("records"))
            if sample is None:
                continue
        end = starts[index + 1][0] - 1 if index + 1 < len(starts) else \
            next((t - 1 for t in top_keys if t > line), len(lines))
        while end > line and (not lines[end - 1].strip()
                              or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        indent = " " * (len(lines[line - 1]) - len(lines[line - 1].lstrip()) + 2)
        text = "null" if sample is None else dump_manifest(sample).rstrip("\n")
        if "\n" not in text and not text.endswith(":"):
            block = f"{indent}sample: {text}\n"
        else:
            block = f"{indent}sample:\n" + "".join(f"{indent}  {row}\n"
                                                  for row in text.split("\n"))
        inserts.append((end, block))
        added.append(op_id)
    for end, block in sorted(inserts, reverse=True):
        lines.insert(end, block)
    if added:
        Path(path).write_text("".join(lines), encoding="utf-8")
    return added
