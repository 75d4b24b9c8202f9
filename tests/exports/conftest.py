"""Fixtures for export tests: a ServiceNow sandbox over real HTTP, a tenant configured for it, and inventory."""

from __future__ import annotations

import pytest

from itam_admin.db import db
from itam_admin.identity import Identity
from itam_admin.settings.store import save_settings
from itam_admin.settings.values import SettingsChange
from tests.conftest import password_grant_refresh_token

ALL_TYPES = ("hardware_inventory", "contracts", "installed_applications")
ACME_ADMIN = Identity("1", "Alice Admin", "acme", frozenset({"integrations.manage"}))


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    app_env["ITAM_EXPORT_MAX_WAIT_SECONDS"] = "20"
    return app_env


@pytest.fixture
def configure_tenant(app, sandbox):
    """Save ServiceNow settings for a tenant pointing at the sandbox, with a token generated there."""

    def configure(tenant: str = "acme", types=ALL_TYPES, user: str = "admin", password: str | None = None, **extra):
        if user == "admin":
            token = sandbox.generate_refresh_token(user, password or user)
        else:
            token = password_grant_refresh_token(sandbox.url, user, password)
        change = SettingsChange(
            instance_url=sandbox.url,
            username=user,
            use_custom_credentials=False,
            export_data_types=tuple(types),
            token=token,
            **extra,
        )
        with app.app_context():
            actor = Identity("1", "Alice Admin", tenant, frozenset({"integrations.manage"}))
            save_settings(tenant, change, actor)
        return token

    return configure


@pytest.fixture
def inventory(app):
    """Give a tenant some inventory (computers, installs, contracts)."""
    from demo_portal.demo_data import generate_inventory

    def make(tenant: str = "acme", computers: int = 40, installs: int = 120, contracts: int = 10, seed: int = 0):
        with app.app_context():
            return generate_inventory(tenant, computers=computers, installs=installs, contracts=contracts, seed=seed)

    return make


@pytest.fixture
def run_export(app):
    """Create a run like the Export button does and execute it in this process; return the finished run."""
    from itam_admin.exports.exporter import export_run
    from itam_admin.exports.models import ExportRun
    from itam_admin.exports.runs import create_run

    def run(tenant: str = "acme", full: bool = False):
        with app.app_context():
            created = create_run(tenant, "manual", ACME_ADMIN, full)
            export_run(created.id)
            db.session.expire_all()
            finished = db.session.get(ExportRun, created.id)
            _ = finished.data_types, finished.failed_batches
            db.session.expunge(finished)
            return finished

    return run


def in_set(import_set_id: str, pairs) -> list[tuple[str, str, str]]:
    """Ledger rows (source id, content hash) that went in one import set, as Ledger.sent takes them."""
    return [(source_id, digest, import_set_id) for source_id, digest in pairs]


def counts(run) -> dict[str, tuple[int, int]]:
    return {dt.data_type: (dt.sent, dt.failed) for dt in run.data_types}


class RedisProcess:
    """A redis-server of the test's own (nothing kept on disk), which the test can kill and start again on the same
    port: a restart comes back empty, as a Redis without persistence does."""

    def __init__(self, workdir) -> None:
        from demo_portal.embedded_redis import free_port

        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self) -> None:
        from demo_portal.embedded_redis import start_redis_server

        self.process = start_redis_server(self.port, self.workdir)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def own_redis(tmp_path):
    workdir = tmp_path / "own-redis"
    workdir.mkdir()
    server = RedisProcess(workdir)
    yield server
    server.stop()
