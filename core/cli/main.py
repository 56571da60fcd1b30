"""The ``splice`` command line: the root group, composed from one module per command group.

Exit codes: 0 ok, 1 a run or request failed, 2 bad input (recipe, manifest, option, config).
"""

from __future__ import annotations

import os

import click

from . import (
    authoring,
    connections,
    connectors,
    db,
    endpoints,
    recipes,
    registry,
    runs,
    serve,
    webhooks,
    worker,
)
from .common import setup_logging


class SpliceGroup(click.Group):
    """Loads plugin commands lazily, the first time a command is looked up."""

    _plugins_loaded = False

    def _load(self) -> None:
        if SpliceGroup._plugins_loaded:
            return
        SpliceGroup._plugins_loaded = True
        from ..plugins import load_plugins, pm

        load_plugins()
        pm.hook.register_commands(cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        if os.environ.get("SPLICE_NO_PLUGIN_COMMANDS") is None:
            self._load()
        return super().list_commands(ctx)


@click.group(cls=SpliceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="splice", prog_name="splice")
@click.option("-v", "--verbose", is_flag=True, help="Log HTTP requests (secrets redacted).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """splice: connect a trigger of one API to actions of another with a recipe file.

    \b
    Start here:
      splice demo                      run the main job against built-in sandboxes
      splice connectors list           what can be connected
      splice validate RECIPE.yaml      check a recipe without running it
      splice run RECIPE.yaml           poll the trigger once and run new events
      splice serve --print-login       run every recipe; the dashboard in a browser

    State lives in $SPLICE_HOME (or the platform data dir); SPLICE_DATABASE_URL selects
    another database. Exit codes: 0 ok, 1 a run failed, 2 bad input.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    setup_logging(verbose)




assert authoring.connectors is connectors.connectors  # its commands joined the group

for _command in (connectors.connectors, connectors.call, connectors.plugins, recipes.validate,
                 recipes.run, recipes.test_recipe, recipes.demo, runs.runs,
                 connections.connections, connections.connect, connections.sandbox,
                 registry.recipes, serve.serve, serve.login_link, worker.worker, db.db):
    cli.add_command(_command)


_ = webhooks, endpoints  # their commands join the `connections` group


def main() -> None:
    cli(prog_name="splice")
