"""The seed's steps, in order, in Chromium, on the demo started the way the README says (`scripts/demo` in a clean
clone of the repository); afterwards Ctrl-C must leave nothing running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import psutil
import pytest
import requests
from playwright.sync_api import expect

from demo_portal.embedded_redis import free_port
from tests.browser.helpers import INTEGRATIONS, assert_accessible, log_in, screenshot
from tests.conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CUSTOM_CLIENT_ID, CUSTOM_CLIENT_SECRET = "acme-own-client", "acme-own-client-secret"


def _processes_of(clone) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(clone) in part for part in process.info["cmdline"] or []):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory):
    """`scripts/demo` in a fresh clone, on free ports, without the test session's DATABASE_URL or REDIS_URL."""
    clone = tmp_path_factory.mktemp("clone") / "itam"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    ports = {"port": free_port(), "sandbox": free_port(), "redis": free_port()}
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "ITAM_DEMO", "VIRTUAL_ENV")}
    temp = clone.parent / "tmp"  # the demo's temporary directory: empty again once it stopped
    temp.mkdir()
    env["TMPDIR"] = str(temp)
    log_path = clone.parent / "demo.log"
    with open(log_path, "wb") as log:
        demo = subprocess.Popen(
            [
                "scripts/demo",
                "--port",
                str(ports["port"]),
                "--sandbox-port",
                str(ports["sandbox"]),
                "--redis-port",
                str(ports["redis"]),
            ],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 900  # a fresh virtualenv and its packages first
    while b"demo is running" not in log_path.read_bytes():
        if demo.poll() is not None or time.monotonic() > deadline:
            demo.kill()
            pytest.fail(f"scripts/demo did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(1)
    yield {
        "portal": f"http://127.0.0.1:{ports['port']}",
        "sandbox": f"http://127.0.0.1:{ports['sandbox']}",
        "process": demo,
        "clone": clone,
        "ports": ports,
        "log": log_path,
        "temp": temp,
    }
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGKILL)


def sandbox_count(demo, table: str) -> int:
    answer = requests.get(f"{demo['sandbox']}/sandbox/api/state", params={"wait_idle": 30}, timeout=60).json()
    return answer["tables"][table]


def test_seed_steps_on_the_running_demo(running_demo, page, page_log):
    portal, sandbox = running_demo["portal"], running_demo["sandbox"]

    # ServiceNow side: register our own OAuth application, then generate a refresh token for it as the admin.
    page.goto(f"{sandbox}/oauth_entity.do")
    page.get_by_label("Client ID").fill(CUSTOM_CLIENT_ID)
    page.get_by_label("Client secret").fill(CUSTOM_CLIENT_SECRET)
    page.get_by_role("button", name="Register").click()
    page.goto(f"{sandbox}/oauth_token_generator.do")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_label("Client ID").fill(CUSTOM_CLIENT_ID)
    page.get_by_role("button", name="Generate OAuth Token").click()
    token = page.locator("#refresh-token").input_value()
    assert len(token) > 40
    screenshot(page, "seed-01-generate-oauth-token")

    # ITAM side: Settings > General > Integrations > ServiceNow.
    log_in(page, portal, "admin@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Integrations").click()
    section = page.locator("#servicenow-section")
    expect(section).to_have_attribute("open", "")
    page.get_by_label("Instance URL").fill(sandbox)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_label("Use custom credentials").check()
    page.get_by_label("Client ID").fill(CUSTOM_CLIENT_ID)
    page.get_by_label("Client Secret").fill(CUSTOM_CLIENT_SECRET)
    for label in ("Hardware inventory", "Installed applications", "Contracts"):
        page.get_by_label(label).check()
    screenshot(page, "seed-02-settings-filled")
    with page.expect_navigation():
        page.locator("#save-button").click()
    expect(page.get_by_text("ServiceNow settings saved.")).to_be_visible()
    for name in ("token", "client_id", "client_secret"):
        expect(page.locator(f"input[name={name}]")).to_have_value("********")
    assert token not in page.content() and CUSTOM_CLIENT_SECRET not in page.content()
    screenshot(page, "seed-03-saved-masked")

    with page.expect_navigation():
        page.locator("#test-button").click()
    expect(page.locator("#test-result")).to_contain_text("Connection works.")
    screenshot(page, "seed-04-test-connection")

    with page.expect_navigation():
        page.locator("#export-button").click()
    expect(page.get_by_text("Export queued.")).to_be_visible()
    outcome = page.locator("#last-completed-export .run-outcome")
    expect(outcome).to_have_text("Succeeded", timeout=240_000)  # the page updates itself
    assert_accessible(page, "the tab after an export")
    screenshot(page, "seed-05-last-completed-export")

    shown = {
        row.get_attribute("data-type"): int(row.locator("td.sent").inner_text())
        for row in page.locator("#last-completed-export tr[data-type]").all()
    }
    assert shown == {
        "hardware_inventory": sandbox_count(running_demo, "cmdb_ci_computer"),
        "contracts": sandbox_count(running_demo, "ast_contract"),
        "installed_applications": sandbox_count(running_demo, "cmdb_sam_sw_install"),
    }
    assert shown["hardware_inventory"] > 0

    page.goto(sandbox + "/")
    screenshot(page, "seed-06-sandbox-received")

    # The history: the recent runs as a chart drawn on the server, with the table beside it.
    page.goto(portal + INTEGRATIONS)
    page.get_by_role("link", name="Export history").click()
    expect(page.get_by_role("img", name=re.compile("Recent exports"))).to_be_visible()
    expect(page.locator("table#history tbody tr")).to_have_count(1)
    assert_accessible(page, "the export history")
    screenshot(page, "seed-07-export-history")

    # Unticking custom credentials and saving clears them.
    page.goto(portal + INTEGRATIONS)
    page.get_by_label("Use custom credentials").uncheck()
    with page.expect_navigation():
        page.locator("#save-button").click()
    expect(page.get_by_text("ServiceNow settings saved.")).to_be_visible()
    page.get_by_label("Use custom credentials").check()
    expect(page.locator("input[name=client_id]")).to_have_value("")
    expect(page.locator("input[name=client_secret]")).to_have_value("")
    page_log.assert_no_csp_violations()


def test_viewer_sees_no_integrations_tab_on_the_demo(running_demo, page):
    portal = running_demo["portal"]
    log_in(page, portal, "viewer@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.locator("nav.tabs")).not_to_contain_text("Integrations")
    response = page.goto(portal + INTEGRATIONS)
    assert response.status == 403
    expect(page.get_by_role("heading", name="You do not have access to Integrations")).to_be_visible()


def test_ctrl_c_stops_everything_the_demo_started(running_demo):
    demo = running_demo["process"]
    launcher = psutil.Process(demo.pid)
    started = [launcher, *launcher.children(recursive=True)]
    assert len(started) >= 5  # the launcher, redis, the sandbox, the worker and the portal
    os.killpg(demo.pid, signal.SIGINT)
    demo.wait(60)
    time.sleep(1)
    assert [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert _processes_of(running_demo["clone"]) == []
    for name, port in running_demo["ports"].items():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"the {name} port is still answering"
    left = [path.name for path in running_demo["temp"].iterdir() if path.name.startswith("itam-redis-")]
    assert left == [], f"the demo left {left} in its temporary directory"
