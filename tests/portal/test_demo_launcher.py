"""What an operator sees starting the demo and running its commands (issue #16): a taken port is named with the flag
that picks another before anything starts, a second start says the inventory is already there, the embedded Redis
leaves no folder behind, a configuration error is one line, and every page has an icon."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from demo_portal.embedded_redis import free_port
from tests.conftest import ROOT

CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("DATABASE_URL", "REDIS_URL", "ITAM_DEMO", "SECRET_KEY", "ITAM_ENCRYPTION_KEYS", "FLASK_APP")
}


def run_demo(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "demo_portal.run_demo", *args],
        cwd=ROOT,
        env={**CLEAN_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_taken_port_is_named_with_the_flag_to_use_before_anything_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        started = time.monotonic()
        result = run_demo(
            "--port",
            str(taken),
            "--sandbox-port",
            str(free_port()),
            "--redis-port",
            str(free_port()),
            env={"ITAM_INSTANCE_PATH": str(tmp_path / "instance"), "TMPDIR": str(tmp_path)},
        )
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    assert f"Port {taken} (the portal) is already in use by another program" in result.stderr
    assert "start the demo on another port with --port " in result.stderr
    assert "demo is running" not in result.stdout + result.stderr
    assert "started" not in result.stdout  # no process was started, no migration run
    assert not (tmp_path / "instance").exists()


def test_the_embedded_redis_leaves_no_folder_in_the_temporary_directory(tmp_path):
    """A setup step that fails after Redis started still stops it and removes its working folder."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = run_demo(
        "--port",
        str(free_port()),
        "--sandbox-port",
        str(free_port()),
        "--redis-port",
        str(free_port()),
        env={
            "TMPDIR": str(temp),
            "ITAM_INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-folder' / 'itam.sqlite3'}",
        },
        timeout=120,
    )
    assert "started redis" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 1 and "setup step failed" in result.stderr
    assert [p.name for p in temp.iterdir() if p.name.startswith("itam-redis-")] == []


def test_a_second_seed_says_the_inventory_is_already_there(app, runner):
    first = runner.invoke(args=["itam", "seed-demo", "--scale", "small"])
    assert first.exit_code == 0, first.output
    assert "Inventory of acme: created 50 computers, 10 contracts and 600 installed applications." in first.output

    second = runner.invoke(args=["itam", "seed-demo", "--scale", "small"])
    assert second.exit_code == 0, second.output
    assert "Demo portal: the demo tenants and users are already there." in second.output
    assert (
        "Inventory of acme: already present (50 computers, 10 contracts and 600 installed applications), kept as is."
        in second.output
    )
    assert "{'hardware_inventory': 0" not in second.output


def test_a_configuration_error_is_one_line_saying_what_to_set(tmp_path):
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    for command in (["itam", "sandbox-fault", "--help"], ["itam", "schedule"], ["--help"]):
        result = subprocess.run(
            [*flask, *command],
            cwd=ROOT,
            env={**CLEAN_ENV, "ITAM_INSTANCE_PATH": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, command
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "SECRET_KEY and ITAM_ENCRYPTION_KEYS must be set (or set ITAM_DEMO=1" in lines[0]


def test_every_portal_page_names_an_icon_that_exists(client):
    page = client.get("/login").get_data(as_text=True)
    assert '<link rel="icon" href="/portal-static/favicon.svg" type="image/svg+xml">' in page
    icon = client.get("/portal-static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    legacy = client.get("/favicon.ico")
    assert legacy.status_code == 301 and legacy.location.endswith("/portal-static/favicon.svg")
