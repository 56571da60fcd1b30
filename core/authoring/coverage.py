"""``splice connectors coverage``: which operations of the official specs a manifest has.

Every ``path x method`` of every OpenAPI file under the spec directory is one spec operation,
with the scopes of its security requirements and, where the spec fixes one, the ``Version``
header values it accepts. A manifest operation covers it when the method matches, the path
matches with parameters renamed (``/users/{id}`` = ``/users/{userId}``, a trailing ``/``
ignored), and the ``Version`` header the operation sends (its own, else the connector's) is
one the spec accepts. The report ends with the ``import-openapi`` command per spec file that
would generate the operations still missing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..model.manifest import Connector
from ..openapi.importer import load_spec

__all__ = ["CoverageReport", "SpecOperation", "coverage"]

_METHODS = ("get", "post", "put", "patch", "delete")
_PARAM = re.compile(r"\{[^}]+\}")


def _shape(path: str) -> str:
    return _PARAM.sub("{}", path.rstrip("/") or "/")


@dataclass
class SpecOperation:
    spec: str            # the file, relative to the spec directory
    method: str
    path: str
    operation_id: str
    scopes: list[str]
    versions: list[str]  # Version header values the spec allows ([] = none fixed)
    operation: str | None = None   # the manifest operation that covers it
    related: bool = False  # its spec file has a path under a resource the manifest uses


@dataclass
class CoverageReport:
    connector: str
    spec_dir: Path
    rows: list[SpecOperation] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)   # manifest operations in no spec

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def covered(self) -> int:
        return sum(1 for r in self.rows if r.operation)

    def import_commands(self, *, related_only: bool = True) -> list[str]:
        """One ``splice connectors import-openapi`` per spec file with missing operations
        (only the spec files related to the manifest, unless ``related_only`` is false)."""
        commands = []
        by_spec: dict[str, list[str]] = {}
        for row in self.rows:
            if not row.operation and (row.related or not related_only):
                paths = by_spec.setdefault(row.spec, [])
                if row.path not in paths:
                    paths.append(row.path)
        for spec, paths in by_spec.items():
            file = self.spec_dir / spec if self.spec_dir.is_dir() else self.spec_dir
            stem = Path(spec).stem
            parts = ["splice", "connectors", "import-openapi", str(file)]
            if any(r.operation for r in self.rows if r.spec == spec):  # else: the whole file
                for path in paths:
                    parts += ["--path", path]
            parts += ["-o", f"{self.connector}_{stem.replace('-', '_')}.yaml"]
            commands.append(shlex.join(parts))
        return commands

    def to_json(self) -> dict[str, Any]:
        return {"connector": self.connector, "total": self.total, "covered": self.covered,
                "operations": [{"spec": r.spec, "method": r.method, "path": r.path,
                                "operation_id": r.operation_id, "scopes": r.scopes,
                                "versions": r.versions, "operation": r.operation,
                                "related": r.related}
                               for r in self.rows],
                "unmatched": self.unmatched, "import": self.import_commands()}


def _spec_files(spec_dir: Path) -> list[Path]:
    if spec_dir.is_file():
        return [spec_dir]
    files = sorted(p for p in spec_dir.rglob("*") if p.suffix in (".json", ".yaml", ".yml"))
    if not files:
        raise InputError(f"{spec_dir}: no OpenAPI files (*.json, *.yaml) in it")
    return files


def _versions(op: dict[str, Any]) -> list[str]:
    for param in op.get("parameters") or []:
        if isinstance(param, dict) and param.get("in") == "header" \
                and str(param.get("name", "")).lower() == "version":
            schema = param.get("schema") or {}
            values = schema.get("enum") or ([schema["default"]] if "default" in schema else [])
            return [str(v) for v in values]
    return []


def _scopes(op: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for requirement in op.get("security", spec.get("security")) or []:
        for scopes in (requirement or {}).values():
            found += [s for s in scopes or [] if s not in found]
    return found


def _spec_operations(spec_dir: Path) -> list[SpecOperation]:
    rows = []
    for file in _spec_files(spec_dir):
        try:
            spec, _ = load_spec(file)
        except InputError:
            continue  # a shared-schemas file or another document without paths
        name = str(file.relative_to(spec_dir)) if spec_dir.is_dir() else file.name
        for path, item in (spec.get("paths") or {}).items():
            for method in _METHODS:
                op = (item or {}).get(method)
                if isinstance(op, dict):
                    rows.append(SpecOperation(name, method.upper(), path,
                                              str(op.get("operationId", "")),
                                              _scopes(op, spec), _versions(op)))
    return rows


def coverage(connector: Connector, spec_dir: Path) -> CoverageReport:
    """Match the spec operations under ``spec_dir`` with ``connector``'s operations."""
    report = CoverageReport(connector.id, spec_dir, _spec_operations(spec_dir))
    used: set[str] = set()
    for row in report.rows:
        for op in connector.operations.values():
            if op.method != row.method or _shape(op.path) != _shape(row.path):
                continue
            version = op.headers.get("Version", connector.headers.get("Version"))
            if row.versions and version not in row.versions:
                continue
            row.operation = op.id
            used.add(op.id)
            break
    report.unmatched = [op_id for op_id in connector.operations if op_id not in used]
    roots = {_root(op.path) for op in connector.operations.values()}
    related = {row.spec for row in report.rows if _root(row.path) in roots}
    for row in report.rows:
        row.related = row.spec in related
    return report


def _root(path: str) -> str:
    return path.strip("/").split("/", 1)[0]
