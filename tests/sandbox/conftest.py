"""Fixtures for the ServiceNow sandbox: a sandbox on loopback per test, and a small client that talks to it the
way an integration does (OAuth token endpoint, then bearer calls)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import requests

from servicenow_sandbox import SandboxServer
from servicenow_sandbox.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

HARDWARE = "u_itam_hardware_inventory"
CONTRACTS = "u_itam_contracts"
INSTALLS = "u_itam_installed_applications"


def computer(source_id: str, **fields: str) -> dict[str, str]:
    """A hardware inventory record as the exporter sends it (all strings)."""
    record = {
        "u_source_id": source_id,
        "u_name": f"PC-{source_id}",
        "u_serial_number": f"SN-{source_id}",
        "u_manufacturer": "Dell",
        "u_model": "Latitude 7440",
        "u_os": "Windows 11",
        "u_os_version": "23H2",
        "u_cpu_type": "Intel Core i7",
        "u_cpu_count": "1",
        "u_cpu_core_count": "8",
        "u_ram_mb": "16384",
        "u_disk_space_gb": "512",
        "u_ip_address": "10.0.0.1",
        "u_mac_address": "00:11:22:33:44:55",
        "u_is_virtual": "false",
        "u_last_inventory_date": "2026-11-01 10:00:00",
        "u_operational_status": "operational",
    }
    record.update(fields)
    return record


def install(source_id: str, computer_source_id: str, **fields: str) -> dict[str, str]:
    record = {
        "u_source_id": source_id,
        "u_computer_source_id": computer_source_id,
        "u_computer_name": f"PC-{computer_source_id}",
        "u_computer_serial_number": f"SN-{computer_source_id}",
        "u_display_name": f"App {source_id}",
        "u_publisher": "Contoso",
        "u_version": "1.0",
        "u_edition": "Pro",
        "u_install_date": "2026-10-01",
        "u_install_location": "C:\\Program Files\\App",
        "u_operational_status": "operational",
    }
    record.update(fields)
    return record


def contract(source_id: str, **fields: str) -> dict[str, str]:
    record = {
        "u_source_id": source_id,
        "u_contract_number": f"C-{source_id}",
        "u_vendor": "Contoso",
        "u_description": "Support",
        "u_contract_type": "maintenance",
        "u_starts": "2026-01-01",
        "u_ends": "2026-12-31",
        "u_total_cost": "1200.00",
        "u_currency": "EUR",
        "u_state": "active",
        "u_renewable": "true",
        "u_operational_status": "operational",
    }
    record.update(fields)
    return record


class Wire:
    """Talks to a sandbox like an integration: gets tokens from /oauth_token.do, then calls the API with them."""

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.url = sandbox.url
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxies, and REQUESTS_CA_BUNDLE must not replace verify
        if sandbox.ca_path:
            self.session.verify = sandbox.ca_path
        self._tokens: dict[str, str] = {}

    def token_request(self, **form: str) -> requests.Response:
        data = {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, **form}
        return self.session.post(f"{self.url}/oauth_token.do", data=data, timeout=10)

    def password_grant(self, username: str = "admin", password: str = "admin", **form: str) -> requests.Response:
        return self.token_request(grant_type="password", username=username, password=password, **form)

    def access_token(self, username: str = "admin") -> str:
        if username not in self._tokens:
            response = self.password_grant(username, username)
            assert response.status_code == 200, response.text
            self._tokens[username] = response.json()["access_token"]
        return self._tokens[username]

    def call(self, method: str, path: str, user: str | None = "admin", **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.setdefault("Authorization", f"Bearer {self.access_token(user)}")
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def insert_multiple(self, staging_table: str, records: list[dict], **kwargs) -> requests.Response:
        return self.call("POST", f"/api/now/import/{staging_table}/insertMultiple", json={"records": records}, **kwargs)

    def send_and_wait(self, staging_table: str, records: list[dict]) -> str:
        """insertMultiple, wait for the transform; returns the import set id."""
        response = self.insert_multiple(staging_table, records)
        assert response.status_code == 201, response.text
        assert self.sandbox.wait_idle(10)
        return response.json()["import_set_id"]

    def run_of(self, import_set_id: str) -> dict:
        response = self.get(f"/api/now/table/sys_import_set_run?sysparm_query=set={import_set_id}")
        assert response.status_code == 200, response.text
        (run,) = response.json()["result"]
        return run

    def control(self, path: str, payload: dict | None = None) -> requests.Response:
        if payload is None:
            return self.session.get(f"{self.url}/sandbox/api/{path}", timeout=10)
        return self.session.post(f"{self.url}/sandbox/api/{path}", json=payload, timeout=10)


@pytest.fixture
def make() -> SimpleNamespace:
    """Record factories: make.computer("1"), make.install("1", "pc-1"), make.contract("1"), and table names."""
    return SimpleNamespace(
        computer=computer, install=install, contract=contract, HARDWARE=HARDWARE, CONTRACTS=CONTRACTS, INSTALLS=INSTALLS
    )


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as running:
        yield running


@pytest.fixture
def wire(sandbox: SandboxServer) -> Iterator[Wire]:
    client = Wire(sandbox)
    yield client
    client.session.close()


@pytest.fixture
def wire_for() -> Iterator[Callable[[SandboxServer], Wire]]:
    """Wire to a sandbox a test builds itself (with its own settings)."""
    made: list[Wire] = []

    def build(sandbox: SandboxServer) -> Wire:
        made.append(Wire(sandbox))
        return made[-1]

    yield build
    for client in made:
        client.session.close()


@pytest.fixture
def tls_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(tls=True) as running:
        yield running
