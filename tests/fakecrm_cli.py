"""The splice CLI with the fake CRM connector registered, for tests that run real processes:
``python -m tests.fakecrm_cli run RECIPE`` (from the project root).

``SPLICE_TEST_MANIFEST`` names another manifest to register instead of
``tests/fixtures/fakecrm.yaml`` (e.g. one without ``idempotency:``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from splice import hookimpl, plugins

FIXTURES = Path(__file__).parent / "fixtures"


class _Plugin:
    @hookimpl
    def register_connectors(self, register: Any) -> None:
        register(Path(os.environ.get("SPLICE_TEST_MANIFEST") or FIXTURES / "fakecrm.yaml"))


def main() -> None:
    plugins.load_plugins()
    plugins.pm.register(_Plugin(), name="fakecrm-cli")
    from splice.cli.main import main as cli

    cli()


if __name__ == "__main__":
    main()
