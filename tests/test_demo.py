"""`splice demo` as a user runs it: a separate process, a fresh SPLICE_HOME, run twice.

The checks read the sandboxes' saved data files ($SPLICE_HOME/sandboxes/<connector>.json),
so they see what the demo really changed, not what it says it changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from splice.mapping.filters import slug

DEMO_TAGS = ("Daily Planet", "Wayne Enterprises", "Kord Industries")
FIGURES = {"posts.published", "impressions", "likes", "comments", "followers"}


def _run_demo(home: Path, cwd: Path) -> str:
    env = {**os.environ, "SPLICE_HOME": str(home), "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "splice", "demo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _invoice2go(home: Path) -> dict[str, Any]:
    data = json.loads((home / "sandboxes" / "invoice2go.json").read_text())
    return dict(data["store"])


def _highlevel_users(home: Path) -> list[dict[str, Any]]:
    data = json.loads((home / "sandboxes" / "ghl_users.json").read_text())
    return list(data["world"]["users"])


def test_demo_does_the_main_job_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = _run_demo(home, tmp_path)

    store = _invoice2go(home)
    clients = list(store["clients"].values())
    invoices = list(store["invoices"].values())
    # the invoices of the clients named by the edited/created HighLevel tags carry the tag
    for name in DEMO_TAGS:
        client = next(c for c in clients if c["name"] == name)
        mine = [i for i in invoices if i["client_id"] == client["id"]
                and i["document_status"] != "void"]
        assert mine and all(f"social-{slug(name)}" in i["tags"] for i in mine), name
    social = [i for i in invoices if any(t.startswith("social-") for t in i["tags"])]
    assert {i["name"] for i in social} == set(DEMO_TAGS)
    # yesterday's social statistics, once per figure
    metrics = [m for m in store["metrics"].values() if (m["external_id"] or "").startswith("ghl:")]
    assert len(metrics) == 5
    assert len({m["external_id"] for m in metrics}) == 5
    assert {m["key"] for m in metrics} == FIGURES
    # every HighLevel user of the location is exactly one Invoice2go client
    users = [u for u in _highlevel_users(home) if "ve9EPM428h8vShlRW1KT" in
             u["roles"]["locationIds"]]
    for user in users:
        assert [c["name"] for c in clients
                if (c["email"] or "").casefold() == user["email"].casefold()] == [user["name"]]
    assert f"clients           {len(users)} created, 0 updated" in out
    assert f"invoices tagged   {len(social)} " in out
    assert "metrics pushed    5 created, 0 updated" in out
    assert "splice runs list" in out
    # the webhook leg: serve up, a user created in HighLevel reaches Invoice2go as a client
    assert "UserCreate verified, stored, acknowledged" in out
    assert "(within a second)" in out, out
    assert any(c["email"] == "wanda.webhook@example.com" for c in clients)

    again = _run_demo(home, tmp_path)

    assert _invoice2go(home) == store
    assert "Total: 0 new event(s)" in again
    assert "0 step call(s), 0 record(s) changed" in again
    assert "nothing was sent" in again
    assert "already connected" in again
    assert "an Invoice2go client already; nothing sent" in again
