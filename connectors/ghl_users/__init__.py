"""splice connector plugin: HighLevel (Users + Social Planner).

The connector is data (`manifest.yaml`); this module only registers it and names its sandbox.
"""

from pathlib import Path

from splice import hookimpl

MANIFEST = Path(__file__).with_name("manifest.yaml")


@hookimpl
def register_connectors(register):  # type: ignore[no-untyped-def]
    register(MANIFEST, sandbox="splice_connectors.ghl_users.sandbox:create_app")
