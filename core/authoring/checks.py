"""What ``splice connectors check`` and the conformance suite find in a manifest.

Beyond :func:`splice.model.manifest.check_manifest` (the meta-schema and the structural
rules), a manifest is checked the way a recipe will use it:

* every operation has a ``sample`` that validates against its output, and a list
  operation's sample has at least one record at ``records`` (``splice test --sample`` takes
  the first one);
* every trigger's ``key``, ``version`` and ``filter`` read only fields that exist in the
  trigger's record schema, its ``cursor`` field exists there and its ``cursor.param`` is an
  input of the operation; a trigger ``sample`` validates against the trigger's output.

Every finding is a :class:`splice.Problem` at ``file:line:column`` of the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DocumentError, Problem, SpliceError
from ..mapping.analysis import references
from ..mapping.templates import TemplateEngine
from ..model.documents import Document, load_document
from ..model.manifest import MISSING, Connector, check_manifest, connector_from_document
from ..model.schema import (
    bundled_validator,
    did_you_mean,
    iter_errors,
    property_names,
    subschema,
    validator_for,
)

__all__ = ["CheckReport", "check_file", "sample_problems", "trigger_problems"]


@dataclass
class CheckReport:
    """The result of checking one manifest file."""

    path: str
    connector: Connector | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _document(connector: Connector) -> Document:
    """The manifest's document with positions (an in-memory one when there is no file)."""
    source = Path(connector.source)
    if source.is_file():
        try:
            return load_document(source)
        except DocumentError:
            pass
    return Document(path=connector.source, data={})


def sample_problems(connector: Connector, doc: Document | None = None) -> list[Problem]:
    """Operations without a sample, samples that do not validate or hold no record."""
    doc = doc or _document(connector)
    found: list[Problem] = []
    for op in connector.operations.values():
        base = ("operations", op.id)
        if op.sample is MISSING:
            found.append(doc.problem(base, "no sample: add an example response body as "
                                           "`sample` (splice test --sample uses it)", key=True))
            continue
        for path, msg, _ in iter_errors(validator_for(op.output), op.sample):
            found.append(doc.problem((*base, "sample", *path),
                                     f"sample does not match output: {msg}"))
        if op.is_list:
            from ..http.request import extract_records

            if not extract_records(op, op.sample):
                found.append(doc.problem((*base, "sample"), f"sample has no record at "
                                                            f"`{op.records}`"))
    return found


def _template_fields(engine: TemplateEngine, source: str, label: str
                     ) -> list[tuple[str | int, ...]] | None:
    try:
        tree = engine.parse(source, label)
    except SpliceError:
        return None
    return [r.path for r in references(tree, ()) if r.root == "record"]


def trigger_problems(connector: Connector, doc: Document | None = None) -> list[Problem]:
    """Trigger keys, versions, filters and cursors that read fields records do not have."""
    doc = doc or _document(connector)
    engine = TemplateEngine()
    found: list[Problem] = []
    for trigger in connector.triggers.values():
        base = ("triggers", trigger.id)
        schema = connector.trigger_output(trigger)
        for name in ("key", "version", "filter"):
            source = getattr(trigger, name)
            if not source:
                continue
            paths = _template_fields(engine, source, f"{trigger.ref}.{name}")
            if paths is None:
                found.append(doc.problem((*base, name), "not a valid template"))
                continue
            for path in paths:
                if path and subschema(schema, path, strict=True) is None:
                    last = str(path[-1])
                    parent = subschema(schema, path[:-1], strict=True)
                    found.append(doc.problem(
                        (*base, name), f"record has no field '{'.'.join(map(str, path))}'"
                                       f"{did_you_mean(last, property_names(parent))}"))
        op = connector.operations.get(trigger.operation or "")
        if trigger.cursor and op is not None:
            cursor_path = tuple(trigger.cursor["field"].split("."))
            if subschema(schema, cursor_path, strict=True) is None:
                found.append(doc.problem((*base, "cursor", "field"),
                                         f"record has no field '{trigger.cursor['field']}'"))
            inputs = property_names(op.input)
            if trigger.cursor["param"] not in inputs:
                found.append(doc.problem((*base, "cursor", "param"),
                                         f"operation '{op.id}' has no input "
                                         f"'{trigger.cursor['param']}'"
                                         f"{did_you_mean(trigger.cursor['param'], inputs)}"))
        if trigger.sample is not MISSING:
            record: Any = trigger.sample
            where: tuple[str | int, ...] = (*base, "sample")
            for part in trigger.record_path:  # a webhook's sample is the delivered event
                record = record.get(part) if isinstance(record, dict) else None
                where = (*where, part)
            for path, msg, _ in iter_errors(validator_for(schema), record):
                found.append(doc.problem((*where, *path),
                                         f"sample does not match the record schema: {msg}"))
    return found


def check_file(path: str | Path) -> CheckReport:
    """Every problem of the manifest at ``path``: errors, and warnings (missing samples)."""
    report = CheckReport(str(path))
    try:
        doc = load_document(path)
    except DocumentError as exc:
        report.errors = list(exc.problems)
        return report
    report.errors = check_manifest(doc)
    if not isinstance(doc.data, dict) or next(iter_errors(bundled_validator("connector"),
                                                          doc.data), None) is not None:
        return report  # not even the shape of a manifest: nothing more can be said
    connector = connector_from_document(doc)
    samples = sample_problems(connector, doc)
    report.warnings = [p for p in samples if p.message.startswith("no sample")]
    seen = {str(p) for p in report.errors}
    for problem in [p for p in samples if not p.message.startswith("no sample")] + \
            trigger_problems(connector, doc):
        if str(problem) not in seen:
            seen.add(str(problem))
            report.errors.append(problem)
    if not report.errors:
        report.connector = connector
    return report
