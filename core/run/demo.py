"""``splice demo``: the real recipes, end to end, against the bundled sandboxes.

No account is needed. Both sandboxes (the HighLevel and Invoice2go emulators) start on free
loopback ports and keep their data in ``$SPLICE_HOME/sandboxes/<connector>.json``; the
connections ``my-highlevel`` and ``my-invoice2go`` are made through the real OAuth flow (the
sandboxes approve on their own and a small function plays the browser); every recipe in
``recipes/`` runs once; and the summary counts what changed in the sandboxes' data. Run it
again and it finds nothing new and changes nothing.

The tag recipe is the exception to "backfill": HighLevel's sandbox holds 250 tags, and
processing all of them would take minutes under the APIs' rate limits. Its first run remembers
the existing tags, then the demo edits two tags and creates one in the HighLevel sandbox, as a
person would, and runs the recipe again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..connections.status import needed_scopes
from ..errors import AuthError, ConfigError
from ..http.network import OPTION as PRIVATE_NETWORK
from .report import RunReport

__all__ = ["CONNECTIONS", "Changes", "DemoSummary", "LegResult", "RecipeResult", "Sandboxes",
           "approve_in_sandbox", "connect_to_sandbox", "diff_invoice2go", "ensure_connection",
           "recipes_dir", "run_demo", "summary_lines"]

#: connector id -> the connection name the recipes use
CONNECTIONS = {"ghl_users": "my-highlevel", "invoice2go": "my-invoice2go"}
TITLES = {"ghl_users": "HighLevel", "invoice2go": "Invoice2go"}
LOOPBACK = "http://127.0.0.1:"
SANDBOX_KEY = "demo_sandbox"  # connection config: the sandbox data file that issued the tokens


def recipes_dir() -> Path:
    """The recipes the demo runs: ``splice/recipes`` in an installed wheel (package data),
    else the project's ``recipes/`` next to ``core/`` in a source checkout."""
    here = Path(__file__).resolve().parents[1]
    for path in (here / "recipes", here.parent / "recipes"):
        if path.is_dir() and any(path.glob("*.y*ml")):
            return path
    raise ConfigError(f"no recipes folder at {here / 'recipes'} or {here.parent / 'recipes'}",
                      hint="reinstall splice: its wheel ships the recipes as package data")


# ---------------------------------------------------------------------------- sandboxes


class Sandboxes:
    """Both sandboxes on free loopback ports, their data in ``state_dir`` (context manager)."""

    def __init__(self, registry: Any, state_dir: Path | None,
                 connector_ids: tuple[str, ...] = tuple(CONNECTIONS)) -> None:
        from ..sandbox.server import SandboxConfig

        self.connectors = {cid: registry.connector(cid) for cid in connector_ids}
        self.configs = {cid: SandboxConfig(state_path=state_dir / f"{cid}.json"
                                           if state_dir else None)
                        for cid in connector_ids}
        #: connectors whose sandbox starts from its seed (no saved data yet)
        self.fresh = {cid: cfg.state_path is None or not cfg.state_path.exists()
                      for cid, cfg in self.configs.items()}
        self.urls: dict[str, str] = {}
        self._stack = contextlib.ExitStack()
        self._http = self._stack.enter_context(httpx.Client(timeout=10.0))

    def __enter__(self) -> Sandboxes:
        from ..sandbox.server import load_factory, serve

        try:
            for cid, connector in self.connectors.items():
                app = load_factory(connector)(self.configs[cid])
                self.urls[cid] = self._stack.enter_context(serve(app))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def state(self, cid: str) -> dict[str, Any]:
        """The sandbox's whole data (``GET /__test__/state``)."""
        response = self._http.get(f"{self.urls[cid]}/__test__/state")
        response.raise_for_status()
        return dict(response.json())

    def control(self, cid: str, method: str, path: str, body: Any = None) -> Any:
        """Call one of the sandbox's ``/__test__/`` controls."""
        response = self._http.request(method, f"{self.urls[cid]}/__test__/{path}", json=body)
        response.raise_for_status()
        return response.json()


def approve_in_sandbox(url: str) -> None:
    """Play the browser: open the consent URL (the sandbox approves by itself) and follow its
    redirect to splice's loopback listener."""
    with httpx.Client(timeout=10.0) as client:
        answer = client.get(url)
        location = answer.headers.get("location")
        if answer.status_code not in (302, 303) or not location:
            raise AuthError(f"the sandbox did not approve the connection (HTTP "
                            f"{answer.status_code})")
        client.get(location)


def connect_to_sandbox(connector: Any, store: Any, *, name: str, base_url: str,
                       config: Any, scopes: list[str]) -> Any:
    """Create connection ``name`` with the real OAuth flow against a running sandbox."""
    from ..connections.authorize import connect

    return connect(connector, store, name=name, client_id=config.client_id,
                   client_secret=config.client_secret, scopes=scopes, base_url=base_url,
                   open_url=approve_in_sandbox, timeout=30.0,
                   config={PRIVATE_NETWORK: True})  # a sandbox listens on 127.0.0.1


# ---------------------------------------------------------------------------- connections


def ensure_connection(store: Any, connector: Any, name: str, sandboxes: Sandboxes,
                      scopes: list[str]) -> str:
    """Make ``name`` usable against the running sandbox; say what was done."""
    cid = connector.id
    url = sandboxes.urls[cid]
    record = store.get_connection(name)
    if record is not None and not (record.base_url or "").startswith(LOOPBACK):
        raise ConfigError(
            f"connection '{name}' points at {record.base_url or connector.base_url}, not at a "
            "sandbox; the demo will not touch it",
            hint="run the demo with its own state folder, e.g. "
                 "`SPLICE_HOME=~/splice-demo splice demo`")
    # Tokens are only good with the sandbox that issued them: remember which one that was.
    issuer = str(sandboxes.configs[cid].state_path or "memory")
    reason = None
    if record is None:
        reason = "new"
    elif record.connector != cid:
        reason = f"was a {record.connector} connection"
    elif record.status == "reauth_required":
        reason = "needed re-authorisation"
    elif sandboxes.fresh[cid] or record.config.get(SANDBOX_KEY) != issuer:
        reason = "the sandbox does not know its tokens"
    elif not set(scopes) <= set(record.scopes):
        reason = "more scopes needed"
    if reason is not None:
        result = connect_to_sandbox(connector, store, name=name, base_url=url,
                                    config=sandboxes.configs[cid], scopes=scopes)
        store.update_tokens(name, None, {SANDBOX_KEY: issuer})
        return (f"connected {name} ({cid}) through OAuth ({reason}); scopes: "
                f"{' '.join(result.scopes)}")
    if record.base_url != url or not record.config.get(PRIVATE_NETWORK):
        # A new port on every run: point the connection at it and keep its tokens.
        store.put_connection(name, connector=record.connector, auth_type=record.auth_type,
                             base_url=url, config={**record.config, PRIVATE_NETWORK: True},
                             secret=record.secret)
    return f"{name} ({cid}) already connected; using its stored tokens"


# ---------------------------------------------------------------------------- results


@dataclass
class RecipeResult:
    """What one recipe did during the demo: the reports of its runs (a recipe whose trigger
    needs activity in the sandbox runs twice: once to remember what exists, once after)."""

    file: str
    name: str
    reports: list[RunReport] = field(default_factory=list)
    steps_sent: int = 0
    note: str | None = None
    problems: list[str] = field(default_factory=list)  # the recipe or sandbox, not a run

    @property
    def events_seen(self) -> int:
        return max((r.events_seen for r in self.reports), default=0)

    @property
    def events_new(self) -> int:
        return sum(r.events_new for r in self.reports)

    @property
    def requests_made(self) -> int:
        return sum(r.requests_made for r in self.reports)

    @property
    def errors(self) -> list[str]:
        return self.problems + [e for r in self.reports for e in r.errors]

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.events_failed == 0 for r in self.reports)


@dataclass
class Changes:
    """Differences between two Invoice2go sandbox states."""

    invoices_tagged: int = 0
    tags_added: int = 0
    metrics_created: int = 0
    metrics_updated: int = 0
    clients_created: int = 0
    clients_updated: int = 0

    @property
    def total(self) -> int:
        return (self.invoices_tagged + self.metrics_created + self.metrics_updated
                + self.clients_created + self.clients_updated)


@dataclass
class LegResult:
    """What an extra leg of the demo did (``splice serve``'s webhook leg)."""

    title: str
    lines: list[str]
    ok: bool = True


#: an extra leg: (sandboxes, store, registry, out) -> what it did; runs before the recipes
Leg = Callable[[Sandboxes, Any, Any, Callable[[str], None]], LegResult]


@dataclass
class DemoSummary:
    """The outcome of :func:`run_demo`."""

    home: Path
    sandboxes: dict[str, str]
    connections: list[str]
    recipes: list[RecipeResult]
    changes: Changes
    legs: list[LegResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.recipes) and all(leg.ok for leg in self.legs)

    @property
    def events_new(self) -> int:
        return sum(r.events_new for r in self.recipes)

    @property
    def requests_made(self) -> int:
        return sum(r.requests_made for r in self.recipes)

    @property
    def steps_sent(self) -> int:
        return sum(r.steps_sent for r in self.recipes)


def diff_invoice2go(before: dict[str, Any], after: dict[str, Any]) -> Changes:
    """Count tagged invoices, pushed metrics and created/updated clients."""
    changes = Changes()
    old_invoices = {i["id"]: i for i in before.get("invoices", [])}
    for invoice in after.get("invoices", []):
        added = set(invoice["tags"]) - set(old_invoices.get(invoice["id"], {}).get("tags", []))
        if added:
            changes.invoices_tagged += 1
            changes.tags_added += len(added)
    for table, created, updated in (("metrics", "metrics_created", "metrics_updated"),
                                    ("clients", "clients_created", "clients_updated")):
        old = {r["id"]: r for r in before.get(table, [])}
        for record in after.get(table, []):
            if record["id"] not in old:
                setattr(changes, created, getattr(changes, created) + 1)
            elif record["updated_at"] != old[record["id"]]["updated_at"]:
                setattr(changes, updated, getattr(changes, updated) + 1)
    return changes


# ---------------------------------------------------------------------------- activity


def _edit_tags(sandboxes: Sandboxes) -> str:
    """What a person does in HighLevel: edit two tags and add one."""
    tags = sandboxes.state("ghl_users")["world"]["tags"]
    live = {t["tag"]: t for t in tags if not t["deleted"]}
    done = []
    for name in ("Daily Planet", "Wayne Enterprises"):
        if name in live:
            sandboxes.control("ghl_users", "PATCH", f"tags/{live[name]['_id']}", {"tag": name})
            done.append(f"edited '{name}'")
    if "Kord Industries" not in live:
        sandboxes.control("ghl_users", "POST", "tags", {"tag": "Kord Industries"})
        done.append("created 'Kord Industries'")
    return ("in the HighLevel sandbox the demo " + ", ".join(done)) if done else \
        "the HighLevel sandbox has none of the demo's tags left to edit"


#: trigger -> what the demo does in a sandbox after the first run remembered what exists
ACTIVITY: dict[str, Callable[[Sandboxes], str]] = {"ghl_users.tag_updated": _edit_tags}


# ---------------------------------------------------------------------------- running


def _run_recipe(path: Path, store: Any, registry: Any, sandboxes: Sandboxes) -> RecipeResult:
    from ..errors import DocumentError, SpliceError
    from ..mapping.templates import TemplateEngine
    from ..model.recipe import load_recipe
    from .plan import build_plan
    from .runner import Runner

    result = RecipeResult(file=path.name, name=path.stem)
    try:
        recipe = load_recipe(path)
        result.name = recipe.name
        plan = build_plan(recipe, registry, TemplateEngine(registry.filters),
                          connections={c.name: c for c in store.list_connections()})
    except DocumentError as exc:
        result.problems.extend(str(p) for p in exc.problems)
        return result
    if plan.webhooks:
        result.note = "webhook triggers: run by `splice serve` (the webhook leg)"
        return result
    activity = ACTIVITY.get(plan.trigger.ref)
    passes: list[tuple[bool, Callable[[Sandboxes], str] | None]] = [(True, None)]
    if activity is not None and not store.trigger_initialized(recipe.id, plan.trigger.ref):
        passes = [(False, None), (False, activity)]
    for backfill, before_run in passes:
        try:
            if before_run is not None:
                result.note = before_run(sandboxes)
        except (httpx.HTTPError, KeyError) as exc:
            result.problems.append(f"could not act in the sandbox: {type(exc).__name__}")
            return result
        runner = Runner(plan, store, registry)
        try:
            report = runner.run(mode="once", backfill=backfill)
        except SpliceError as exc:
            result.problems.append(str(exc))
            return result
        finally:
            runner.close()
        result.reports.append(report)
        if report.run_id:
            run = store.get_run(report.run_id)
            result.steps_sent += sum(1 for s in (run.step_results if run else ())
                                     if s.status == "succeeded")
    return result


@contextlib.contextmanager
def _home(home: Path | None) -> Iterator[Path]:
    from ..secrets import HOME_ENV
    from ..secrets import home as splice_home

    if home is None:
        yield splice_home()
        return
    previous = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(home)
    try:
        yield splice_home()
    finally:
        if previous is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = previous


def _order(paths: list[Path]) -> list[Path]:
    """Recipes by file name; the engine-event recipes last, so they see this run's events."""
    return sorted(paths, key=lambda p: (p.name.startswith("connection_"), p.name))


def run_demo(*, keep: bool = False, out: Callable[[str], None] = print,
             home: Path | None = None, legs: tuple[Leg, ...] = ()) -> DemoSummary:
    """Run every recipe against fresh or saved sandboxes and report what changed; ``legs``
    run first, once the connections are made."""
    from ..plugins import get_registry
    from ..store.database import Store

    registry = get_registry()
    folder = recipes_dir()
    paths = _order(sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.json")))
    with _home(home) as root, Sandboxes(registry, root / "sandboxes") as sandboxes:
        store = Store.open()
        try:
            out("splice demo: the recipes in recipes/ against local sandboxes "
                "(no account needed)")
            for cid, url in sandboxes.urls.items():
                state = "new data" if sandboxes.fresh[cid] else "saved data"
                out(f"  {TITLES[cid]} sandbox on {url} ({state}: "
                    f"{sandboxes.configs[cid].state_path})")
            lines = [ensure_connection(store, connector, CONNECTIONS[cid], sandboxes,
                                       needed_scopes(connector, paths))
                     for cid, connector in sandboxes.connectors.items()]
            for line in lines:
                out(f"  {line}")
            before = sandboxes.state("invoice2go")
            leg_results = [leg(sandboxes, store, registry, out) for leg in legs]
            results = []
            for path in paths:
                out(f"running {path.name} ...")
                results.append(_run_recipe(path, store, registry, sandboxes))
            changes = diff_invoice2go(before, sandboxes.state("invoice2go"))
        finally:
            store.close()
        summary = DemoSummary(root, dict(sandboxes.urls), lines, results, changes,
                              leg_results)
        for line in summary_lines(summary):
            out(line)
        if keep:
            _wait(sandboxes, out)
    return summary


def summary_lines(summary: DemoSummary) -> list[str]:
    """The human summary: per recipe, what changed in Invoice2go, where to look next."""
    lines = ["", "Recipes:"]
    for r in summary.recipes:
        status = "ok" if r.ok else "FAILED"
        lines.append(f"  {r.file}: {r.events_new} new event(s) of {r.events_seen} record(s) "
                     f"seen, {r.requests_made} request(s), {r.steps_sent} step call(s) - "
                     f"{status}")
        if r.note:
            lines.append(f"    ({r.note})")
        lines.extend(f"    error: {e}" for e in r.errors[:5])
    for leg in summary.legs:
        lines += ["", f"{leg.title}:", *(f"  {line}" for line in leg.lines)]
    c = summary.changes
    lines += ["", "What changed in the Invoice2go sandbox:",
              f"  invoices tagged   {c.invoices_tagged} ({c.tags_added} tag(s) added)",
              f"  metrics pushed    {c.metrics_created} created, {c.metrics_updated} updated",
              f"  clients           {c.clients_created} created, {c.clients_updated} updated",
              "",
              f"Total: {summary.events_new} new event(s), {summary.requests_made} request(s), "
              f"{summary.steps_sent} step call(s), {c.total} record(s) changed."]
    if summary.events_new == 0 and c.total == 0:
        lines.append("Nothing new since the last demo, so nothing was sent: splice remembers "
                     "what it has processed.")
    lines += ["", "Look next:",
              "  splice runs list              every run, with its status",
              "  splice runs show RUN_ID       one run's events and the requests it sent",
              "  splice connections list       the two connections and their tokens",
              "  splice demo --keep            leave the sandboxes running to explore",
              "  splice serve --print-login    the same runs and connections in the dashboard",
              f"  (state: {summary.home})"]
    return lines


def _wait(sandboxes: Sandboxes, out: Callable[[str], None]) -> None:
    out("")
    out("Sandboxes stay up until Ctrl-C:")
    for cid, url in sandboxes.urls.items():
        out(f"  {TITLES[cid]}: {url}   (data: {url}/__test__/state)")
    out("  e.g. splice run recipes/ghl_users_to_invoice2go_clients.yaml  (the connections "
        "point at these URLs)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        out("sandboxes stopped")
