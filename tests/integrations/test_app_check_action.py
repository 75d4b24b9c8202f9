"""Test connection checks the connector's ServiceNow app for the chosen data types, through the tab's HTTP door:
against the installed sandbox it says installed; against a stock instance it names the missing update set and its
fix; a label-mapped staging table and a user without the role are reported; a 403 on sys_transform_map is "could not
verify", not "missing".

ServiceNow behaviour relied on (cited in itam_admin/servicenow/app_check.py and tests/servicenow/test_app_check.py):
unknown tables answer 400 "Invalid table <name>" (SERVICENOW-FACTS, recorded answers); insertMultiple maps keys by
column label without a sys_rest_insert_multiple entry set to Column name (ServiceNowDocs c_ImportSetAPI.md);
inherited grants are sys_user_has_role rows with inherited=true (User Role Inheritance API docs); whether a
least-privileged user may read the configuration tables is unverified (research notes).
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import INTEGRATIONS, csrf_token_from
from tests.integrations.standin import STAGING_TABLES, StandIn


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"  # loopback instances over http
    return app_env


def connection_result(client, url: str, token: str = "a-refresh-token-0123456789", **fields) -> str:
    """Test connection as the browser does it; the text of the page that shows the result, whitespace collapsed."""
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    data = {
        "instance_url": url,
        "username": "admin",
        "token": token,
        "export_data": ["contracts"],
        "csrf_token": csrf_token_from(page),
        **fields,
    }
    html = client.post(f"{INTEGRATIONS}/servicenow/test", data=data, follow_redirects=True).get_data(as_text=True)
    start = html.index('id="test-result"')
    return " ".join(re.sub(r"<[^>]+>", " ", html[start : html.index('id="export-section"', start)]).split())


def admin_roles() -> list[dict]:
    return [{"role.name": "admin", "inherited": "false", "state": "active"}]


def test_the_installed_sandbox_says_the_app_is_installed(client, auth):
    from servicenow_sandbox import SandboxServer

    auth.login()
    with SandboxServer(default_client_id="default-client", default_client_secret="default-client-secret") as sandbox:
        token = sandbox.generate_refresh_token("admin", "admin")
        text = connection_result(
            client, sandbox.url, token=token, export_data=["hardware_inventory", "contracts", "installed_applications"]
        )
    assert "Connection works." in text
    assert "The ServiceNow app is installed for Hardware inventory, Contracts, Installed applications." in text
    assert "not ready" not in text


def test_a_stock_instance_names_the_missing_update_set_and_its_fix(client, auth):
    auth.login()
    with StandIn(tables={}) as instance:  # no staging table: every read answers 400 Invalid table
        text = connection_result(client, instance.url, export_data=["hardware_inventory", "contracts"])
        probes = [seen.path for seen in instance.seen if seen.path.startswith("/api/now/table/u_itam_")]
    assert "Connected, but ServiceNow is not ready for the export." in text
    assert "The ServiceNow app is not ready for Hardware inventory, Contracts" in text
    assert "Hardware inventory: the staging table u_itam_hardware_inventory does not exist in ServiceNow." in text
    assert "Contracts: the staging table u_itam_contracts does not exist in ServiceNow." in text
    # One fix for both, said once.
    assert text.count("import the update set ITAM ServiceNow Connector 1.0.0") == 1
    assert "(the download under Set up ServiceNow on the Integrations tab) and commit it." in text
    assert probes == ["/api/now/table/u_itam_hardware_inventory", "/api/now/table/u_itam_contracts"]


def test_a_label_mapped_staging_table_is_reported(client, auth):
    tables = {
        **{name: [] for name in STAGING_TABLES},
        "sys_user_has_role": admin_roles(),
        "sys_rest_insert_multiple": [{"source_table": "u_itam_contracts", "column_mapping": "label"}],
        "sys_transform_map": [{"source_table": "u_itam_contracts", "name": "ITAM Contracts to Contract"}],
    }
    auth.login()
    with StandIn(tables=tables) as instance:
        text = connection_result(client, instance.url)
    assert "Connected, but ServiceNow is not ready for the export." in text
    assert "Contracts: insertMultiple on u_itam_contracts maps JSON keys by column label" in text
    assert "Fix: Ask your ServiceNow admin to open System Web Services > REST Insert Multiples" in text.replace(
        "&gt;", ">"
    )


def test_a_user_without_the_role_is_reported(client, auth):
    tables = {
        **{name: [] for name in STAGING_TABLES},
        "sys_user_has_role": [
            {"role.name": "itil", "inherited": "false", "state": "active"},
            {"role.name": "snc_internal", "inherited": "true", "state": "active"},
        ],
        "sys_rest_insert_multiple": [{"source_table": "u_itam_contracts", "column_mapping": "column_name"}],
        "sys_transform_map": [{"source_table": "u_itam_contracts", "name": "ITAM Contracts to Contract"}],
    }
    auth.login()
    with StandIn(tables=tables) as instance:
        text = connection_result(client, instance.url)
    assert "Connected, but ServiceNow is not ready for the export." in text
    assert "The ServiceNow user admin has none of the roles u_itam_integration, import_transformer, admin" in text
    assert "Fix: Ask your ServiceNow admin to give admin the role u_itam_integration" in text


def test_a_403_on_sys_transform_map_is_could_not_verify_not_missing(client, auth):
    tables = {
        **{name: [] for name in STAGING_TABLES},
        "sys_user_has_role": [
            {"role.name": "u_itam_integration", "inherited": "false", "state": "active"},
            {"role.name": "import_transformer", "inherited": "true", "state": "active"},
        ],
        "sys_rest_insert_multiple": [{"source_table": "u_itam_contracts", "column_mapping": "column_name"}],
        "sys_transform_map": 403,
    }
    auth.login()
    with StandIn(tables=tables) as instance:
        text = connection_result(client, instance.url)
    assert "Connection works." in text
    assert "The ServiceNow app is installed for Contracts." in text
    assert "Could not verify that u_itam_contracts has an active transform map" in text
    assert "did not let admin read sys_transform_map (HTTP 403)" in text
    assert "check step 2 of Set up ServiceNow" in text
    assert "not ready" not in text
