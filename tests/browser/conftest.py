"""Browser fixtures: the demo portal served on loopback, headless Chromium (Playwright), axe-core, the ServiceNow
sandbox and an RQ worker process. Helpers that act like a user (log in, screenshots, axe) are in helpers.py.

Chromium is the system one (/usr/bin/chromium); these tests never run `playwright install`. Without Chromium the
tests are skipped, except under CI where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.browser.helpers import AXE_ROUTE, PageLog
from tests.conftest import stop_process

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ITAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NPM_PREFIX = ROOT / "build" / "npm"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "https_only: run the portal with ITAM_SERVICENOW_ALLOW_INSECURE=0 (production rules for Instance URL)",
    )


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)


# -- the app, served for real ----------------------------------------------------------------------------------


@pytest.fixture
def app_env(app_env, request):
    """The app's environment with loopback/http Instance URLs allowed (the sandbox), unless the test is https_only.
    Overrides tests/conftest.py's app_env before `app` is built from it."""
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "0" if request.node.get_closest_marker("https_only") else "1"
    return app_env


class _ServerThread(threading.Thread):
    def __init__(self, app) -> None:
        super().__init__(name="live-portal", daemon=True)
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)

    def run(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.join(5)


@pytest.fixture
def live_portal(app, redis_conn):
    """The demo portal (with the plugin) on http://127.0.0.1:<free port>; Redis is empty at the start."""
    thread = _ServerThread(app)
    thread.start()
    yield f"http://127.0.0.1:{thread.server.server_port}"
    thread.stop()


# -- Chromium ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()
    playwright.stop()


# Reports CSP violations even when Chromium does not log them to the console (init scripts are not subject to CSP).
_REPORT_CSP = """
document.addEventListener('securitypolicyviolation', function (e) {
  console.error('CSP violation: Refused ' + e.violatedDirective + ' for ' + (e.blockedURI || 'inline') +
                ' at ' + e.sourceFile + ':' + e.lineNumber);
});
"""


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(chromium, page_log, axe_source):
    """A fresh browser context and page (no cookies) that records console messages and page errors.

    CSP stays on: axe-core is served from the page's own origin by page.route, so it loads under `script-src 'self'`.
    """
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(10_000)
    context.add_init_script(_REPORT_CSP)

    def serve_axe(route):
        route.fulfill(status=200, content_type="application/javascript; charset=utf-8", body=axe_source)

    context.route(f"**{AXE_ROUTE}", serve_axe)
    browser_page = context.new_page()
    browser_page.on("console", lambda msg: page_log.console.append(f"[{msg.type}] {msg.text}"))
    browser_page.on("pageerror", lambda error: page_log.errors.append(str(error)))
    yield browser_page
    context.close()


# -- axe-core -----------------------------------------------------------------------------------------------------


def _axe_candidates() -> list[Path]:
    paths = []
    if os.environ.get("ITAM_AXE_JS"):
        paths.append(Path(os.environ["ITAM_AXE_JS"]))
    paths.append(ROOT / "node_modules" / "axe-core" / "axe.min.js")
    paths.append(NPM_PREFIX / "node_modules" / "axe-core" / "axe.min.js")
    return paths


@pytest.fixture(scope="session")
def axe_source() -> str:
    for path in _axe_candidates():
        if path.is_file():
            return path.read_text(encoding="utf-8")
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("axe-core is missing and npm is not installed: set ITAM_AXE_JS to axe.min.js or install npm")
    subprocess.run(
        [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX), "axe-core@4"],
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    path = NPM_PREFIX / "node_modules" / "axe-core" / "axe.min.js"
    if not path.is_file():
        pytest.fail(f"npm install axe-core did not produce {path}")
    return path.read_text(encoding="utf-8")


# -- ServiceNow sandbox and worker ----------------------------------------------------------------------------------


@pytest.fixture
def worker(app, app_env, live_portal, tmp_path):
    """`flask --app wsgi itam worker` as a subprocess on the same database and Redis as the live portal (started
    after live_portal, which empties Redis)."""
    env = {**os.environ, **app_env, "ITAM_INSTANCE_PATH": app.instance_path, "PYTHONUNBUFFERED": "1"}
    flask = Path(sys.executable).with_name("flask")
    command = [str(flask)] if flask.exists() else [sys.executable, "-m", "flask"]
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--app", "wsgi", "itam", "worker", "--tick-seconds", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        if b"listening" in log_path.read_bytes().lower():
            break
        time.sleep(0.1)
    if process.poll() is not None:
        pytest.fail(f"the worker exited at start (code {process.returncode}):\n{log_path.read_text(errors='replace')}")
    process.log_path = log_path  # type: ignore[attr-defined]
    yield process
    stop_process(process)
