"""Test connection's app check against the sandbox, which follows ServiceNow here: it starts as a stock instance
(no staging tables, no default client entry), installs the update set downloaded from the tab, and decides reads by
roles and ACLs (rows a user may not read are left out of the answer, as ServiceNow filters them).

ServiceNow behaviour relied on: unknown tables answer 400 "Invalid table <name>" (SERVICENOW-FACTS, recorded answers);
insertMultiple maps keys by column label without a sys_rest_insert_multiple entry set to Column name (ServiceNowDocs
c_ImportSetAPI.md); inherited grants are sys_user_has_role rows with inherited=true (User Role Inheritance API docs);
an Application Registry entry exists only where someone created it (SERVICENOW-FACTS, OAuth).
"""

from __future__ import annotations

import pytest

from tests.conftest import INTEGRATIONS, password_grant_refresh_token
from tests.integrations.test_app_check_action import connection_result


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"  # the sandbox over http on loopback
    return app_env


def test_a_stock_sandbox_names_the_missing_update_set(client, auth):
    """A stock instance has no Application Registry entry for the portal's default client either (it comes with the
    update set; SERVICENOW-FACTS, OAuth), so the tenant admin's own OAuth application is used here."""
    from servicenow_sandbox import SandboxServer

    auth.login()
    with SandboxServer(stock=True) as sandbox:
        sandbox.add_client("tenant-own-client", "tenant-own-secret")
        token = sandbox.generate_refresh_token("admin", "admin", client_id="tenant-own-client")
        text = connection_result(
            client,
            sandbox.url,
            token=token,
            use_custom_credentials="y",
            client_id="tenant-own-client",
            client_secret="tenant-own-secret",
            export_data=["contracts", "installed_applications"],
        )
    assert "Connected, but ServiceNow is not ready for the export." in text
    assert "Contracts: the staging table u_itam_contracts does not exist in ServiceNow." in text
    assert "Installed applications: the staging table u_itam_installed_applications does not exist" in text
    assert text.count("import the update set ITAM ServiceNow Connector 1.0.0") == 1


def sandbox_result(client, sandbox, user: str = "admin", password: str = "admin", **fields) -> str:
    token = password_grant_refresh_token(sandbox.url, user, password)
    return connection_result(client, sandbox.url, token=token, username=user, **fields)


@pytest.mark.parametrize(
    ("mapping", "said"), [("label", "Column mapping label"), (None, "it has no REST Insert Multiple entry")]
)
def test_a_label_mapped_staging_table_of_the_sandbox_is_reported(client, auth, sandbox, mapping, said):
    sandbox.set_column_mapping("u_itam_contracts", mapping)
    auth.login()
    text = sandbox_result(client, sandbox, export_data=["hardware_inventory", "contracts"])
    assert "Connected, but ServiceNow is not ready for the export." in text
    assert "Contracts: insertMultiple on u_itam_contracts maps JSON keys by column label" in text and said in text
    assert "u_itam_hardware_inventory maps" not in text


def test_a_sandbox_user_without_the_role_is_reported_and_one_with_it_is_fine(client, auth, sandbox):
    sandbox.add_user("itam.export", "integration-pw", roles=["u_itam_integration"], name="ITAM Export")
    auth.login()
    text = sandbox_result(client, sandbox, "itil", "itil")
    assert "The ServiceNow user itil has none of the roles u_itam_integration, import_transformer, admin" in text
    assert "Fix: Ask your ServiceNow admin to give itil the role u_itam_integration" in text

    text = sandbox_result(client, sandbox, "itam.export", "integration-pw")
    assert "Connection works." in text and "The ServiceNow app is installed for Contracts." in text


def test_configuration_the_sandbox_hides_from_the_user_is_could_not_verify(client, auth, sandbox):
    """ServiceNow filters rows a user may not read out of a Table API answer: an empty list is no proof."""
    sandbox.add_user("itam.export", "integration-pw", roles=["u_itam_integration"], name="ITAM Export")
    sandbox.set_read_roles("sys_transform_map", [])  # admin only
    auth.login()
    text = sandbox_result(client, sandbox, "itam.export", "integration-pw")
    assert "Connection works." in text and "The ServiceNow app is installed for Contracts." in text
    assert "Could not verify that u_itam_contracts has an active transform map" in text
    assert "read sys_transform_map (no maps visible)" in text


def test_an_inactive_transform_map_of_the_sandbox_is_reported(client, auth, sandbox):
    sandbox.set_transform_map_active("u_itam_installed_applications", False)
    auth.login()
    text = sandbox_result(client, sandbox, export_data=["installed_applications"])
    assert "Installed applications: u_itam_installed_applications has no active transform map" in text
    assert "make “ITAM Installed Applications to Software Installation” active" in text


def test_a_stock_sandbox_after_importing_the_downloaded_update_set_says_installed(client, auth):
    from servicenow_sandbox import SandboxServer

    auth.login()
    xml = client.get(f"{INTEGRATIONS}/servicenow/servicenow-app.xml").get_data(as_text=True)
    with SandboxServer(stock=True) as sandbox:
        sandbox.add_client("tenant-own-client", "tenant-own-secret")
        token = sandbox.generate_refresh_token("admin", "admin", client_id="tenant-own-client")
        custom = {"use_custom_credentials": "y", "client_id": "tenant-own-client", "client_secret": "tenant-own-secret"}
        before = connection_result(client, sandbox.url, token=token, **custom)
        sandbox.install_update_set(xml)
        after = connection_result(client, sandbox.url, token=token, **custom)
    assert "Contracts: the staging table u_itam_contracts does not exist in ServiceNow." in before
    assert "Connection works." in after and "The ServiceNow app is installed for Contracts." in after
