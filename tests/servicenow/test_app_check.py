"""The app check on the wire (`responses`): what a ServiceNow instance has of the connector's update set for the
chosen data types, each gap with its fix, "could not verify" where ServiceNow only refused to show, and the export's
fail-fast after one request per data type.

ServiceNow behaviour relied on:
- An unknown table in the Table API answers 400 {"error": {"message": "Invalid table <name>"}, "status": "failure"}
  (SERVICENOW-FACTS, "Import Set API", from recorded answers).
- insertMultiple maps JSON keys by column label unless a Rest Insert Multiples [sys_rest_insert_multiple] entry for
  the source table changes "Column mapping from Label to Column name" (ServiceNow docs, ServiceNow/ServiceNowDocs
  markdown/api-reference/rest-apis/c_ImportSetAPI.md, insertMultiple).
- A user's roles are rows of sys_user_has_role, inherited ones (from contained roles and groups) with
  inherited=true (ServiceNow docs, User Role Inheritance API: "A user's role can be directly granted, inherited from
  other roles, or inherited from groups"; public scripts query `sys_user_has_role` with `inherited=false` for direct
  grants only).
- Whether a least-privileged user may read sys_transform_map, sys_rest_insert_multiple and sys_user_has_role is not
  documented (research notes, "Roles and ACLs"): a 403 or an empty answer there is "could not verify".
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from itam_admin.servicenow.app_check import check_app, check_staging_tables, require_app
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError

TABLE_API = re.compile(r"https://acme\.service-now\.com/api/now/table/(\w+)")
STAGING = ("u_itam_hardware_inventory", "u_itam_contracts", "u_itam_installed_applications")
ALL = ("hardware_inventory", "contracts", "installed_applications")
USER_SYS_ID = "a" * 32


def invalid_table(name: str) -> tuple[int, dict, str]:
    body = {"error": {"message": f"Invalid table {name}", "detail": None}, "status": "failure"}
    return 400, {"Content-Type": "application/json"}, json.dumps(body)


def forbidden() -> tuple[int, dict, str]:
    body = {"error": {"message": "User Not Authorized", "detail": "ACL Exception"}, "status": "failure"}
    return 403, {"Content-Type": "application/json"}, json.dumps(body)


class FakeInstance:
    """The Table API of an instance with (or without) the update set; records every table read."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.staging = set(STAGING)
        self.insert_multiple = {table: "column_name" for table in STAGING}
        self.transform_maps = {table: "true" for table in STAGING}
        self.roles = [("admin", "false"), ("import_transformer", "true")]
        self.forbidden: set[str] = set()
        self.missing_config: set[str] = set()
        self.reads: list[tuple[str, dict[str, list[str]]]] = []
        rsps.add_callback(responses.GET, TABLE_API, callback=self._answer)

    def _answer(self, request):
        table = TABLE_API.match(request.url).group(1)
        params = parse_qs(urlsplit(request.url).query)
        self.reads.append((table, params))
        if table in self.forbidden:
            return forbidden()
        if table in self.missing_config:
            return invalid_table(table)
        query = params.get("sysparm_query", [""])[0]
        if table in STAGING:
            return (200, {}, json.dumps({"result": []})) if table in self.staging else invalid_table(table)
        wanted = set(re.search(r"source_tableIN([^^]*)", query).group(1).split(",")) if "IN" in query else set()
        if table == "sys_user":
            rows = [{"user_name": "itam.export", "name": "ITAM Export", "sys_id": USER_SYS_ID}]
        elif table == "sys_user_has_role":
            rows = [{"role.name": role, "inherited": inherited, "state": "active"} for role, inherited in self.roles]
        elif table == "sys_rest_insert_multiple":
            rows = [{"source_table": t, "column_mapping": m} for t, m in self.insert_multiple.items() if t in wanted]
        elif table == "sys_transform_map":
            active_only = "active=true" in query
            rows = [
                {"source_table": t, "name": f"map of {t}"}
                for t, active in self.transform_maps.items()
                if t in wanted and (active == "true" or not active_only)
            ]
        else:
            return invalid_table(table)
        return 200, {"Content-Type": "application/json"}, json.dumps({"result": rows})

    def tables_read(self) -> list[str]:
        return [table for table, _ in self.reads]


@pytest.fixture
def instance(rsps, token_endpoint) -> FakeInstance:
    return FakeInstance(rsps)


def problems(status) -> str:
    return "\n".join(f"{f.problem} | {f.fix}" for f in status.gaps)


def test_an_installed_app_is_reported_installed_within_n_plus_three_requests(client, instance):
    status = check_app(client, ALL, user_sys_id=USER_SYS_ID)

    assert status.installed and not status.gaps and not status.unverified
    assert (
        status.summary == "The ServiceNow app is installed for Hardware inventory, Contracts, Installed applications."
    )
    assert len(instance.reads) == len(ALL) + 3
    roles_read = dict(instance.reads)["sys_user_has_role"]
    assert roles_read["sysparm_query"] == [f"user={USER_SYS_ID}^ORDERBYinherited"]


def test_a_stock_instance_names_the_missing_update_set_and_its_fix(client, instance):
    instance.staging = set()

    status = check_app(client, ["contracts", "installed_applications"], user_sys_id=USER_SYS_ID)

    assert not status.installed
    assert status.missing_tables == ("u_itam_contracts", "u_itam_installed_applications")
    text = problems(status)
    assert "Contracts: the staging table u_itam_contracts does not exist in ServiceNow." in text
    assert "import the update set ITAM ServiceNow Connector 1.0.0" in text and "Set up ServiceNow" in text
    # Nothing to configure on tables that are not there: no configuration table was read.
    assert "sys_transform_map" not in instance.tables_read()
    assert "sys_rest_insert_multiple" not in instance.tables_read()
    assert "u_itam_contracts" in status.missing_message and "import the update set" in status.missing_message


def test_a_label_mapped_staging_table_is_reported_with_its_fix(client, instance):
    """Without a sys_rest_insert_multiple entry set to Column name, insertMultiple matches keys to labels
    (c_ImportSetAPI.md): our u_* keys would land nowhere while the API still answers 201."""
    instance.insert_multiple["u_itam_contracts"] = "label"
    del instance.insert_multiple["u_itam_hardware_inventory"]

    status = check_app(client, ALL, user_sys_id=USER_SYS_ID)

    assert not status.installed and len(status.gaps) == 2
    text = problems(status)
    assert "Contracts: insertMultiple on u_itam_contracts maps JSON keys by column label" in text
    assert "Column mapping label" in text
    assert "Hardware inventory: insertMultiple on u_itam_hardware_inventory maps JSON keys by column label" in text
    assert "no REST Insert Multiple entry" in text
    assert "REST Insert Multiples and set Column mapping to Column name for u_itam_contracts" in text


def test_a_staging_table_without_an_active_transform_map_is_reported(client, instance):
    instance.transform_maps["u_itam_installed_applications"] = "false"

    status = check_app(client, ALL, user_sys_id=USER_SYS_ID)

    (gap,) = status.gaps
    assert gap.problem == (
        "Installed applications: u_itam_installed_applications has no active transform map, so staged rows would "
        "never reach cmdb_sam_sw_install."
    )
    assert "“ITAM Installed Applications to Software Installation” active" in gap.fix
    transform_read = dict(instance.reads)["sys_transform_map"]
    assert transform_read["sysparm_query"] == [
        "source_tableINu_itam_hardware_inventory,u_itam_contracts,u_itam_installed_applications^active=true"
    ]


def test_a_user_without_the_role_is_reported_with_its_fix(client, instance, sn):
    instance.roles = [("itil", "false"), ("snc_internal", "true")]

    status = check_app(client, ["contracts"], user_sys_id=USER_SYS_ID)

    (gap,) = status.gaps
    assert gap.problem.startswith(f"The ServiceNow user {sn.username} has none of the roles u_itam_integration")
    assert gap.fix.startswith(f"Ask your ServiceNow admin to give {sn.username} the role u_itam_integration")


@pytest.mark.parametrize("role", ["u_itam_integration", "import_transformer"])
def test_an_inherited_role_is_enough(client, instance, role):
    """Inherited grants are sys_user_has_role rows with inherited=true (User Role Inheritance API docs); the
    least-privileged user needs no admin role (research notes: import_transformer loads; u_itam_integration
    contains it)."""
    instance.roles = [("snc_internal", "false"), (role, "true")]

    status = check_app(client, ["contracts"], user_sys_id=USER_SYS_ID)

    # Not admin, yet every row answered: nothing missing, nothing unverified.
    assert status.installed and not status.unverified


def test_a_403_on_sys_transform_map_is_could_not_verify_not_missing(client, instance):
    instance.forbidden.add("sys_transform_map")

    status = check_app(client, ["hardware_inventory", "contracts"], user_sys_id=USER_SYS_ID)

    assert status.installed and not status.gaps
    (item,) = status.unverified
    assert item.problem.startswith("Could not verify that u_itam_hardware_inventory, u_itam_contracts have an active")
    assert "(HTTP 403)" in item.problem and "missing" not in item.problem
    assert item.fix.startswith("Ask your ServiceNow admin to check step 2 of Set up ServiceNow")


def test_empty_configuration_answers_for_a_non_admin_are_could_not_verify(client, instance):
    """A user whom ACLs hide the rows from gets an empty list, which is not proof the rows are absent."""
    instance.roles = [("u_itam_integration", "false"), ("import_transformer", "true")]
    instance.insert_multiple.clear()
    instance.transform_maps.clear()

    status = check_app(client, ALL, user_sys_id=USER_SYS_ID)

    assert status.installed
    assert [f.problem.split(":")[0] for f in status.unverified] == [
        "Could not verify that insertMultiple maps JSON keys by column name for u_itam_hardware_inventory, "
        "u_itam_contracts, u_itam_installed_applications",
        "Could not verify that u_itam_hardware_inventory, u_itam_contracts, u_itam_installed_applications have an "
        "active transform map",
    ]


def test_the_same_empty_answers_for_an_admin_are_gaps(client, instance):
    """An admin sees every row, so for them an empty answer means the entries are not there."""
    instance.insert_multiple.clear()
    instance.transform_maps.clear()

    status = check_app(client, ["contracts"], user_sys_id=USER_SYS_ID)

    assert len(status.gaps) == 2 and not status.unverified


def test_roles_that_cannot_be_read_are_could_not_verify(client, instance):
    instance.forbidden.add("sys_user_has_role")

    status = check_app(client, ["contracts"])

    assert status.installed
    assert any("sys_user_has_role (HTTP 403)" in f.problem for f in status.unverified)
    assert any("step 4 of Set up ServiceNow" in f.fix for f in status.unverified)
    # Without the sys_user lookup's sys_id the grants are looked up by the Username.
    assert dict(instance.reads)["sys_user_has_role"]["sysparm_query"] == ["user.user_name=itam.export^ORDERBYinherited"]


def test_a_missing_rest_insert_multiples_table_is_could_not_verify(client, instance):
    """Some releases need the Insert Multiple Web Service plugin (SERVICENOW-FACTS, practitioner on Tokyo)."""
    instance.missing_config.add("sys_rest_insert_multiple")

    status = check_app(client, ["contracts"], user_sys_id=USER_SYS_ID)

    (item,) = status.unverified
    assert "the table does not exist" in item.problem and status.installed


def test_a_staging_table_the_user_may_not_read_is_a_role_gap_not_a_missing_table(client, instance, sn):
    """The update set's ACLs let only u_itam_integration read its staging tables: a 403 means the table is there."""
    instance.forbidden.add("u_itam_contracts")

    status = check_app(client, ["contracts"], user_sys_id=USER_SYS_ID)

    (gap,) = status.gaps
    assert status.missing_tables == ()
    assert f"does not let {sn.username} read the staging table u_itam_contracts (HTTP 403)" in gap.problem
    assert "the role u_itam_integration" in gap.fix


def test_the_export_fails_fast_after_one_request_per_data_type(client, instance):
    instance.staging = {"u_itam_hardware_inventory"}

    with pytest.raises(ServiceNowError) as caught:
        require_app(client, ALL)

    error = caught.value
    assert error.kind is ErrorKind.APP_NOT_INSTALLED and error.stops_run and not error.retryable
    assert instance.tables_read() == list(STAGING)
    assert error.message == (
        "ServiceNow at acme.service-now.com does not have the connector's ServiceNow app for Contracts, Installed "
        "applications: the staging tables u_itam_contracts, u_itam_installed_applications do not exist. Ask your "
        "ServiceNow admin to import the update set ITAM ServiceNow Connector 1.0.0 (the download under Set up "
        "ServiceNow on the Integrations tab) and commit it. Then export again."
    )


def test_the_export_check_passes_an_installed_app_with_one_request_per_data_type(client, instance):
    require_app(client, ["contracts"])
    assert instance.tables_read() == ["u_itam_contracts"]
    assert check_staging_tables(client, ["contracts"]).missing_message is None


def test_a_server_fault_during_the_check_is_raised_as_it_is(client, rsps, token_endpoint, sleeps):
    rsps.add(responses.GET, TABLE_API, status=500, json={"error": {"message": "boom"}})

    with pytest.raises(ServiceNowError) as caught:
        check_staging_tables(client, ["contracts"])

    assert caught.value.kind is ErrorKind.SERVER_ERROR


def test_an_export_proves_the_user_and_the_app_at_once_and_names_the_missing_app(client, instance):
    """Before an export (exporter.prove_connection): the token, then the user read and the staging table probes at
    once (one round trip for both, issue #15); a missing staging table stops the run, named."""
    from itam_admin.exports.exporter import prove_connection

    instance.staging = {"u_itam_hardware_inventory"}

    with pytest.raises(ServiceNowError) as caught:
        prove_connection(client, ["hardware_inventory", "contracts"])

    assert caught.value.kind is ErrorKind.APP_NOT_INSTALLED
    assert sorted(instance.tables_read()) == ["sys_user", "u_itam_contracts", "u_itam_hardware_inventory"]
    assert prove_connection(client, ["hardware_inventory"]).sys_id == USER_SYS_ID


def test_when_the_user_read_fails_too_its_fault_is_the_one_an_export_reports(client, instance):
    """The user read's fault comes first, as when the two ran one after the other: it says what to fix first."""
    from itam_admin.exports.exporter import prove_connection

    instance.staging = set()
    instance.forbidden = {"sys_user"}

    with pytest.raises(ServiceNowError) as caught:
        prove_connection(client, ["contracts"])

    assert caught.value.kind is ErrorKind.FORBIDDEN
    assert sorted(instance.tables_read()) == ["sys_user", "u_itam_contracts"]
