"""The command line: `sandbox` runs a sandbox in its own process; `sandbox-fault` drives a running one over HTTP.
End to end: a real process, real HTTP on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner

from servicenow_sandbox import SandboxServer
from servicenow_sandbox.cli import sandbox_command, sandbox_fault_command


class Process:
    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process = process
        self.url = url

    def token(self, user: str = "admin", client: tuple[str, str] = ("itam-demo-client", "itam-demo-secret")) -> str:
        form = {"grant_type": "password", "username": user, "password": user}
        response = requests.post(f"{self.url}/oauth_token.do", data=form, auth=client, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def get(self, path: str, token: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def start(*args: str) -> Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "servicenow_sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = process.stdout.readline()  # the first line names the URL, once it listens
    match = re.search(r"listening on (http\S+)", line)
    if not match:
        process.kill()
        pytest.fail(f"the sandbox did not start: {line!r} {process.stderr.read()}")
    return Process(process, match.group(1))


def stop(running: Process, how: signal.Signals = signal.SIGINT) -> int:
    running.process.send_signal(how)
    try:
        return running.process.wait(10)
    finally:
        running.process.kill()
        running.process.stdout.close()
        running.process.stderr.close()


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[Process]:
    """One process for the module (starting Python and Flask takes a while); each test resets it."""
    running = start("--memory", "--add-client", "e2e-client:e2e-secret")
    yield running
    assert stop(running) == 0


@pytest.fixture
def sandbox_process(running_sandbox: Process) -> Process:
    assert requests.post(f"{running_sandbox.url}/sandbox/api/reset", json={}, timeout=10).status_code == 200
    return running_sandbox


def fault(url: str, *args: str):
    return CliRunner().invoke(sandbox_fault_command, ["--url", url, *args])


def test_sandbox_process_serves_the_api_and_the_token_page(sandbox_process):
    token = sandbox_process.token(client=("e2e-client", "e2e-secret"))

    assert sandbox_process.url.startswith("http://127.0.0.1:")
    assert sandbox_process.get("/api/now/table/sys_user?sysparm_query=user_name=admin", token).status_code == 200
    assert (
        "Generate OAuth Token" in requests.get(f"{sandbox_process.url}/itam_generate_oauth_token.do", timeout=10).text
    )
    assert "Generate OAuth Token" in requests.get(f"{sandbox_process.url}/oauth_token_generator.do", timeout=10).text


def test_fault_command_fails_the_next_requests_of_a_running_sandbox(sandbox_process):
    token = sandbox_process.token()

    result = fault(sandbox_process.url, "--fail-next", "2", "--status", "503", "--retry-after", "3")

    assert result.exit_code == 0, result.output
    assert '"remaining": 2' in result.output
    answers = [sandbox_process.get("/api/now/table/sys_user", token) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["Retry-After"] == "3"


def test_fault_command_drops_connections(sandbox_process):
    token = sandbox_process.token()

    assert fault(sandbox_process.url, "--drop-next", "1").exit_code == 0

    with pytest.raises(requests.ConnectionError):
        sandbox_process.get("/api/now/table/sys_user", token)
    assert sandbox_process.get("/api/now/table/sys_user", token).status_code == 200


def test_fault_command_sets_latency_and_rate_limit_then_clears(sandbox_process):
    token = sandbox_process.token()

    assert fault(sandbox_process.url, "--latency-ms", "120", "--rate-limit", "1/3600").exit_code == 0
    started = time.perf_counter()
    first = sandbox_process.get("/api/now/table/sys_user", token)
    assert time.perf_counter() - started >= 0.12
    limited = sandbox_process.get("/api/now/table/sys_user", token)

    assert first.status_code == 200 and limited.status_code == 429
    assert fault(sandbox_process.url, "--clear").exit_code == 0
    assert sandbox_process.get("/api/now/table/sys_user", token).status_code == 200


def test_fault_command_revokes_a_users_tokens(sandbox_process):
    admin, itil = sandbox_process.token("admin"), sandbox_process.token("itil")

    result = fault(sandbox_process.url, "--revoke-tokens", "admin")

    assert result.exit_code == 0
    assert int(re.search(r'"revoked": (\d+)', result.output).group(1)) >= 2
    assert sandbox_process.get("/api/now/table/sys_user", admin).status_code == 401
    assert sandbox_process.get("/api/now/table/sys_user", itil).status_code == 200


def test_the_command_line_sandbox_transforms_in_a_couple_of_seconds_by_default(sandbox_process):
    """The demo sandbox takes its time like ServiceNow does; SandboxServer in tests defaults to no wait."""
    settings = requests.get(f"{sandbox_process.url}/sandbox/api/state", timeout=10).json()["settings"]

    assert (settings["transform_seconds"], settings["transform_jitter"]) == (2.0, 0.5)


def test_fault_command_rejects_rows_and_holds_transforms(sandbox_process):
    token = sandbox_process.token()
    url = sandbox_process.url

    held = fault(url, "--reject-every", "2", "--reject-comment", "Not today", "--hold-transforms")
    answer = requests.post(
        f"{url}/api/now/import/u_itam_hardware_inventory/insertMultiple",
        json={"records": [{"u_source_id": "1", "u_name": "A"}, {"u_source_id": "2", "u_name": "B"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    waiting = requests.get(f"{url}/sandbox/api/state?wait_idle=0.5", timeout=10).json()
    released = fault(url, "--release-transforms", "--transform-seconds", "0")
    done = requests.get(f"{url}/sandbox/api/state?wait_idle=10", timeout=20).json()
    run = sandbox_process.get(f"/api/now/table/sys_import_set_run?sysparm_query=set={answer['import_set_id']}", token)
    restored = fault(url, "--transform-seconds", "2", "--no-rejects")

    assert held.exit_code == 0 and '"every": 2' in held.output
    assert waiting["idle"] is False and waiting["transforms_held"] is True
    assert released.exit_code == 0 and done["idle"] is True
    assert run.json()["result"][0]["errors"] == "1"
    assert restored.exit_code == 0 and '"reject_rows": null' in restored.output


def test_fault_command_sends_the_odd_answers(sandbox_process):
    token = sandbox_process.token()

    assert fault(sandbox_process.url, "--hibernate", "1", "--scope", "all").exit_code == 0
    hibernating = sandbox_process.get("/api/now/table/sys_user", token)
    assert fault(sandbox_process.url, "--quota-cancel", "1", "--malformed").exit_code == 0
    cancelled = sandbox_process.get("/api/now/table/sys_user", token)
    assert fault(sandbox_process.url, "--too-many-requests", "1").exit_code == 0
    queued = sandbox_process.get("/api/now/table/sys_user", token)

    assert hibernating.status_code == 200 and "Your instance is hibernating" in hibernating.text
    assert cancelled.status_code == 200 and cancelled.text.endswith('"status": "failure"}')
    assert queued.status_code == 429 and "Retry-After" not in queued.headers


def test_fault_command_reports_an_unreachable_sandbox():
    result = fault("http://127.0.0.1:9", "--clear")

    assert result.exit_code == 1
    assert "Cannot reach the sandbox" in result.output


def test_fault_command_refuses_a_malformed_rate_limit():
    result = fault("http://127.0.0.1:9", "--rate-limit", "lots")

    assert result.exit_code == 2
    assert "N/SECONDS" in result.output


def test_sandbox_with_a_database_file_keeps_its_state_there(tmp_path):
    database = tmp_path / "state" / "sandbox.sqlite3"
    running = start("--db", str(database))
    token = running.token()
    requests.post(
        f"{running.url}/api/now/import/u_itam_hardware_inventory/insertMultiple",
        json={"records": [{"u_source_id": "1", "u_name": "Kept"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    requests.get(f"{running.url}/sandbox/api/state?wait_idle=10", timeout=20)
    assert stop(running, signal.SIGTERM) == 0  # stops cleanly on SIGTERM too

    with SandboxServer(database=str(database)) as reopened:
        assert [r["name"] for r in reopened.records("cmdb_ci_computer")] == ["Kept"]


def test_sandbox_command_starts_stock_or_installs_an_update_set_file(tmp_path):
    from itam_admin.servicenow_app import build_update_set

    app_file = tmp_path / "itam-servicenow-connector.xml"
    app_file.write_text(build_update_set("file-client"), encoding="utf-8")
    stock = start("--memory", "--stock")
    try:
        stock_state = requests.get(f"{stock.url}/sandbox/api/state", timeout=10).json()
        stock_page = requests.get(f"{stock.url}/itam_generate_oauth_token.do", timeout=10)
    finally:
        assert stop(stock) == 0
    installed = start("--memory", "--install-app", str(app_file))
    try:
        installed_state = requests.get(f"{installed.url}/sandbox/api/state", timeout=10).json()
        installed_page = requests.get(f"{installed.url}/itam_generate_oauth_token.do", timeout=10)
    finally:
        assert stop(installed) == 0

    assert stock_state["update_sets"] == [] and stock_page.status_code == 404
    assert installed_state["update_sets"] == ["ITAM ServiceNow Connector 1.0.0"]
    assert installed_page.status_code == 200 and "Generate OAuth Token" in installed_page.text


def test_sandbox_command_refuses_a_file_that_is_not_an_update_set(tmp_path):
    not_xml = tmp_path / "notes.xml"
    not_xml.write_text("<notes/>", encoding="utf-8")

    result = CliRunner().invoke(sandbox_command, ["--memory", "--port", "0", "--install-app", str(not_xml)])

    assert result.exit_code == 2
    assert "not an update set the sandbox can install" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "loopback"),
        (["--add-client", "no-secret"], "ID:SECRET"),
        (["--memory", "--db", "x.sqlite3"], "either --db or --memory"),
        (["--rate-limit", "10"], "N/SECONDS"),
        (["--stock", "--install-app", __file__], "either --stock or --install-app"),
    ],
)
def test_sandbox_command_refuses_bad_options(args, message):
    result = CliRunner().invoke(sandbox_command, args)

    assert result.exit_code == 2
    assert message in result.output
