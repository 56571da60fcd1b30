"""``ConformanceSuite``: the conformance checks as a pytest test class to subclass."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .conformance import load_connector, sample_problems, sandbox_problems, trigger_problems

__all__ = ["ConformanceSuite"]


class ConformanceSuite:
    """Mix-in test class: set ``connector`` (or ``manifest``), optionally ``inputs``/``skip``."""

    connector: ClassVar[str] = ""
    manifest: ClassVar[str | Path | None] = None
    sandbox: ClassVar[str | None] = None
    inputs: ClassVar[dict[str, dict[str, Any]]] = {}
    skip: ClassVar[frozenset[str]] = frozenset()

    def _connector(self) -> Any:
        if not self.connector and self.manifest is None:
            raise AssertionError(f"{type(self).__name__} names no connector or manifest")
        return load_connector(self.connector, manifest=self.manifest, sandbox=self.sandbox)

    def test_manifest_passes_connectors_check(self) -> None:
        from ..authoring.checks import check_file

        connector = self._connector()
        if not Path(connector.source).is_file():
            return  # registered as a dict: the other checks still run
        problems = check_file(connector.source).errors
        assert not problems, "\n".join(str(p) for p in problems)

    def test_every_operation_has_a_valid_sample(self) -> None:
        problems = sample_problems(self._connector())
        assert not problems, "\n".join(str(p) for p in problems)

    def test_every_trigger_key_is_in_its_record_schema(self) -> None:
        problems = trigger_problems(self._connector())
        assert not problems, "\n".join(str(p) for p in problems)

    def test_sandbox_answers_every_operation(self) -> None:
        connector = self._connector()
        assert connector.sandbox, f"connector '{connector.id}' ships no sandbox"
        problems = sandbox_problems(connector, inputs=self.inputs, skip=set(self.skip))
        assert not problems, "\n".join(problems)
