"""A stock sandbox has nothing of the connector; installing the update set's XML (import page, Python, control
endpoint) gives it the staging tables, columns, transform maps, column-name mapping, OAuth entry and token page,
all read from the XML, and roles and ACLs decide who may load and read (issue #13).

Sources: an update set is imported through Retrieved Update Sets > Import Update Set from XML, then committed
(SERVICENOW-FACTS); an unknown table answers 400 `Invalid table <name>` (SERVICENOW-FACTS, recorded answers);
insertMultiple maps JSON keys to column labels unless a Rest Insert Multiples entry says Column name (Import Set
API docs, ServiceNow/ServiceNowDocs markdown/api-reference/rest-apis/c_ImportSetAPI.md); loading needs
import_transformer (practitioner, SERVICENOW-FACTS); a user's grants are sys_user_has_role rows, inherited ones with
`inherited` true; ServiceNow filters rows a user may not read instead of refusing the request (Table API docs:
sysparm_limit "is applied before ACL evaluation").
"""

from __future__ import annotations

import re

import pytest

from itam_admin.datatypes import DATA_TYPES
from itam_admin.servicenow_app import build_update_set
from servicenow_sandbox import SandboxServer
from servicenow_sandbox.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from tests.sandbox.test_sandbox_pages import Page, assert_strict_page

STAGING = tuple(data_type.staging_table for data_type in DATA_TYPES)


@pytest.fixture
def stock(wire_for):
    """A stock sandbox and a wire to it; the wire's OAuth client is registered by hand, as an admin would."""
    with SandboxServer(stock=True) as sandbox:
        sandbox.add_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        yield sandbox, wire_for(sandbox)


def results(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["result"]


def upload(wire, xml_text: str, field: str = "update_set"):
    form = Page(wire.session.get(f"{wire.url}/sys_remote_update_set.do").text)
    if field == "update_set":
        files = {"update_set": ("itam-servicenow-connector.xml", xml_text.encode(), "application/xml")}
        return wire.session.post(f"{wire.url}/sys_remote_update_set.do", data={"csrf_token": form.csrf()}, files=files)
    return wire.session.post(f"{wire.url}/sys_remote_update_set.do", data={"csrf_token": form.csrf(), "xml": xml_text})


# -- a stock instance ---------------------------------------------------------------------------------------------


def test_a_stock_instance_has_nothing_of_the_connector(stock, make):
    sandbox, wire = stock

    for table in STAGING:
        assert wire.get(f"/api/now/table/{table}").json() == {
            "error": {"message": f"Invalid table {table}", "detail": None},
            "status": "failure",
        }
    loaded = wire.insert_multiple(make.HARDWARE, [make.computer("1")])
    assert (loaded.status_code, loaded.json()["error"]["message"]) == (400, f"Invalid table {make.HARDWARE}")
    assert results(wire.get("/api/now/table/sys_rest_insert_multiple")) == []
    assert results(wire.get("/api/now/table/sys_transform_map")) == []
    assert results(wire.get("/api/now/table/sys_db_object?sysparm_query=nameSTARTSWITHu_itam")) == []
    assert results(wire.get("/api/now/table/sys_dictionary?sysparm_query=element=u_source_id")) == []
    assert wire.session.get(f"{wire.url}/itam_generate_oauth_token.do").status_code == 404
    assert wire.session.get(f"{wire.url}/oauth_token_generator.do").status_code == 404
    with pytest.raises(ValueError, match="u_source_id"):
        sandbox.add_records("cmdb_ci_computer", [{"name": "x", "u_source_id": "1"}])
    assert sandbox.state.snapshot()["update_sets"] == []


def test_a_stock_instance_has_no_oauth_client_until_one_is_registered(wire_for):
    with SandboxServer(stock=True) as sandbox:
        wire = wire_for(sandbox)
        refused = wire.password_grant()
        sandbox.add_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        accepted = wire.password_grant()

    assert (refused.status_code, refused.json()) == (
        401,
        {"error": "server_error", "error_description": "access_denied"},
    )
    assert accepted.status_code == 200


# -- installing ---------------------------------------------------------------------------------------------------


def test_importing_the_xml_through_the_import_page_installs_the_connector(stock, make):
    sandbox, wire = stock

    response = upload(wire, build_update_set(DEMO_CLIENT_ID))

    assert response.status_code == 200
    assert_strict_page(response)
    assert "Committed ITAM ServiceNow Connector 1.0.0: 3 staging tables, 3 transform maps" in response.text
    query = f"nameIN{','.join(STAGING)}&sysparm_display_value=true&sysparm_exclude_reference_link=true"
    tables = {row["name"]: row for row in results(wire.get(f"/api/now/table/sys_db_object?sysparm_query={query}"))}
    assert set(tables) == set(STAGING)
    assert {row["super_class"] for row in tables.values()} == {"Import Set Row"}
    mapping = results(wire.get("/api/now/table/sys_rest_insert_multiple?sysparm_fields=source_table,column_mapping"))
    assert sorted((row["source_table"], row["column_mapping"]) for row in mapping) == [
        (table, "column_name") for table in sorted(STAGING)
    ]
    fields = "sysparm_fields=source_table,target_table"
    maps = results(wire.get(f"/api/now/table/sys_transform_map?sysparm_query=active=true&{fields}"))
    assert sorted((m["source_table"], m["target_table"]) for m in maps) == sorted(
        (d.staging_table, d.target_table) for d in DATA_TYPES
    )
    columns = results(
        wire.get(f"/api/now/table/sys_dictionary?sysparm_query=name={make.INSTALLS}^ORDERBYsys_created_on")
    )
    assert [c["element"] for c in columns] == list(DATA_TYPES[2].field_names)
    assert wire.send_and_wait(make.CONTRACTS, [make.contract("1")])
    assert len(sandbox.records("ast_contract")) == 1
    assert sandbox.records("ast_contract")[0]["u_source_id"] == "1"


def test_the_installed_token_page_uses_the_update_sets_oauth_entry(wire_for):
    """The update set's entry carries the operator's client id and no secret; the sandbox plays the ServiceNow admin
    who types in the secret the operator gave them (the settings' default secret)."""
    with SandboxServer(stock=True, default_client_id="operator-id", default_client_secret="operator-secret") as sandbox:
        wire = wire_for(sandbox)
        upload(wire, build_update_set("operator-id"), field="xml")
        form = Page(wire.session.get(f"{wire.url}/itam_generate_oauth_token.do").text)
        answer = wire.session.post(
            f"{wire.url}/itam_generate_oauth_token.do",
            data={"csrf_token": form.csrf(), "username": "admin", "password": "admin"},
        )
        token = Page(answer.text).by_id["refresh-token"]["value"]
        refreshed = wire.token_request(
            grant_type="refresh_token", refresh_token=token, client_id="operator-id", client_secret="operator-secret"
        )

    assert refreshed.status_code == 200
    assert "operator-secret" not in answer.text


def test_what_is_not_an_update_set_installs_nothing(stock):
    sandbox, wire = stock
    broken = build_update_set().replace("&lt;/sys_db_object&gt;", "&lt;/sys_db_objec&gt;", 1)

    response = upload(wire, broken)

    assert response.status_code == 400
    assert "Not installed: the payload of update" in response.text
    assert sandbox.state.catalog.staging_tables == ()
    assert wire.get(f"/api/now/table/{STAGING[0]}").status_code == 400


def test_installing_from_python_and_the_control_endpoint(stock, make):
    sandbox, wire = stock

    app = sandbox.install_update_set(build_update_set(DEMO_CLIENT_ID))
    again = wire.control("update_sets", {"xml": build_update_set(DEMO_CLIENT_ID)})
    refused = wire.control("update_sets", {"xml": "<unload/>"})

    assert tuple(app.staging_tables) == STAGING
    assert again.json() == {"installed": app.name, "staging_tables": list(STAGING)}
    assert refused.status_code == 400 and "Not installed" in refused.json()["error"]
    # Committing again updates what it installed, it does not add a second copy.
    assert len(results(wire.get("/api/now/table/sys_transform_map"))) == 3
    assert len(results(wire.get(f"/api/now/table/sys_db_object?sysparm_query=name={make.HARDWARE}"))) == 1


def test_sandbox_server_installs_a_given_update_set(wire_for, make):
    xml_text = build_update_set("given-client")

    with SandboxServer(app=xml_text, default_client_id="given-client", default_client_secret="s3cret") as sandbox:
        assert sandbox.state.snapshot()["update_sets"] == ["ITAM ServiceNow Connector 1.0.0"]
        assert sandbox.generate_refresh_token()

    with pytest.raises(ValueError, match="stock"):
        SandboxServer(app=xml_text, stock=True)


def test_what_was_installed_survives_a_restart(tmp_path, wire_for, make):
    database = str(tmp_path / "sandbox.sqlite3")
    with SandboxServer(database=database, stock=True) as first:
        first.install_update_set(build_update_set(DEMO_CLIENT_ID))
        first.set_column_mapping(make.CONTRACTS, "label")

    with SandboxServer(database=database, stock=True) as second:
        wire = wire_for(second)
        assert second.state.catalog.staging_tables == STAGING
        assert wire.password_grant().status_code == 200
        path = f"/api/now/table/sys_rest_insert_multiple?sysparm_query=source_table={make.CONTRACTS}"
        assert results(wire.get(path))[0]["column_mapping"] == "label"  # an admin's change stays


# -- insertMultiple's column mapping --------------------------------------------------------------------------------


def test_without_the_column_name_entry_keys_are_matched_to_labels_and_our_rows_arrive_empty(sandbox, wire, make):
    sandbox.set_column_mapping(make.CONTRACTS, "label")

    response = wire.insert_multiple(make.CONTRACTS, [make.contract("1")])
    assert sandbox.wait_idle()
    query = f"sys_import_set={response.json()['import_set_id']}"
    (row,) = results(wire.get(f"/api/now/table/{make.CONTRACTS}?sysparm_query={query}"))

    assert response.status_code == 201  # the API still answers as if all went well
    assert (row["u_source_id"], row["u_vendor"]) == ("", "")
    assert row["sys_import_state"] == "skipped"  # nothing to coalesce on
    assert sandbox.records("ast_contract") == []


def test_with_label_mapping_keys_that_are_labels_land(sandbox, wire, make):
    sandbox.set_column_mapping(make.CONTRACTS, None)  # no entry at all: ServiceNow's default, label

    wire.send_and_wait(make.CONTRACTS, [{"Source ID": "c1", "Vendor": "Contoso", "u_description": "lost"}])

    (deal,) = sandbox.records("ast_contract")
    assert (deal["u_source_id"], deal["vendor"], deal["short_description"]) == ("c1", "Contoso", "")


def test_a_synchronous_entry_transforms_before_answering(sandbox, wire, make):
    sandbox.hold_transforms()  # a held asynchronous transform would leave the rows pending
    sandbox.state.store.execute(
        "UPDATE sys_rest_insert_multiple SET transform = 'synchronous' WHERE source_table = ?", (make.CONTRACTS,)
    )

    import_set_id = wire.insert_multiple(make.CONTRACTS, [make.contract("1")]).json()["import_set_id"]

    assert wire.run_of(import_set_id)["inserts"] == "1"


def test_an_inactive_transform_map_leaves_the_rows_pending(sandbox, wire, make):
    sandbox.set_transform_map_active(make.CONTRACTS, False)

    import_set_id = wire.send_and_wait(make.CONTRACTS, [make.contract("1")])

    active = f"/api/now/table/sys_transform_map?sysparm_query=source_table={make.CONTRACTS}^active=true"
    assert results(wire.get(active)) == []
    (row,) = results(wire.get(f"/api/now/table/{make.CONTRACTS}?sysparm_query=sys_import_set={import_set_id}"))
    assert row["sys_import_state"] == "pending"
    assert results(wire.get(f"/api/now/table/sys_import_set_run?sysparm_query=set={import_set_id}")) == []
    assert wire.get(f"/api/now/table/sys_import_set/{import_set_id}").json()["result"]["state"] == "loaded"


# -- roles and ACLs -----------------------------------------------------------------------------------------------


def test_the_integration_role_may_load_and_read_back_and_nothing_less_will_do(sandbox, wire, make):
    sandbox.add_user("itam.integration", "pw", roles=["u_itam_integration"])
    sandbox.add_user("loader", "pw", roles=["import_transformer"])
    tokens = {}
    for user in ("itam.integration", "loader"):
        grant = wire.password_grant(user, "pw").json()
        tokens[user] = {"Authorization": f"Bearer {grant['access_token']}"}

    loaded = wire.insert_multiple(make.CONTRACTS, [make.contract("1")], user=None, headers=tokens["itam.integration"])
    assert sandbox.wait_idle()
    refused = wire.insert_multiple(make.CONTRACTS, [make.contract("2")], user=None, headers=tokens["loader"])
    import_set_id = loaded.json()["import_set_id"]
    as_integration = {"user": None, "headers": tokens["itam.integration"]}
    run = wire.get(f"/api/now/table/sys_import_set_run?sysparm_query=set={import_set_id}", **as_integration)
    rows = wire.get(f"/api/now/table/{make.CONTRACTS}?sysparm_query=sys_import_set={import_set_id}", **as_integration)
    itil_runs = wire.get("/api/now/table/sys_import_set_run", user="itil")

    assert loaded.status_code == 201
    assert refused.status_code == 403  # import_transformer alone fails the update set's create ACL
    assert results(run)[0]["inserts"] == "1"
    assert results(rows)[0]["sys_import_state"] == "inserted"
    assert results(itil_runs) == []  # not allowed to read: an empty list, as ServiceNow filters by ACL
    assert itil_runs.headers["X-Total-Count"] == "0"


def test_a_users_grants_are_readable_with_the_inherited_ones(sandbox, wire):
    user = sandbox.add_user("itam.integration", "pw", roles=["u_itam_integration"])
    grant = wire.password_grant("itam.integration", "pw").json()
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}

    by_sys_id = wire.get(
        f"/api/now/table/sys_user_has_role?sysparm_query=user={user['sys_id']}^ORDERBYinherited"
        "&sysparm_fields=role.name,inherited,state",
        user=None,
        headers=bearer,
    )
    by_name = wire.get(
        "/api/now/table/sys_user_has_role?sysparm_query=user.user_name=itam.integration&sysparm_fields=role.name",
        user=None,
        headers=bearer,
    )
    others = wire.get("/api/now/table/sys_user_has_role?sysparm_query=user.user_name=admin", user=None, headers=bearer)
    by_admin = wire.get("/api/now/table/sys_user_has_role?sysparm_query=user.user_name=itam.integration")

    assert results(by_sys_id) == [
        {"role.name": "u_itam_integration", "inherited": "false", "state": "active"},
        {"role.name": "import_transformer", "inherited": "true", "state": "active"},
    ]
    assert sorted(row["role.name"] for row in results(by_name)) == ["import_transformer", "u_itam_integration"]
    assert results(others) == []  # one's own grants only, without user_admin
    assert len(results(by_admin)) == 2


def test_read_access_can_be_narrowed_for_a_test(sandbox, wire, make):
    sandbox.add_user("itam.integration", "pw", roles=["u_itam_integration"])
    grant = wire.password_grant("itam.integration", "pw").json()
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}

    sandbox.set_read_roles("sys_rest_insert_multiple", [])  # admin only
    hidden = wire.get("/api/now/table/sys_rest_insert_multiple", user=None, headers=bearer)
    wire.control("config", {"read_roles": {"table": "sys_rest_insert_multiple", "roles": None}})
    shown = wire.get("/api/now/table/sys_rest_insert_multiple", user=None, headers=bearer)

    assert results(hidden) == []
    assert len(results(shown)) == 3


def test_configuration_and_users_over_the_control_endpoint(sandbox, wire, make):
    added = wire.control("users", {"user_name": "svc", "password": "pw", "roles": ["u_itam_integration"]})
    mapped = wire.control("config", {"column_mapping": {"table": make.HARDWARE, "mapping": "label"}})
    inactive = wire.control("config", {"transform_map_active": {"table": make.HARDWARE, "active": False}})
    unknown = wire.control("config", {"column_mapping": {"table": "u_nothing", "mapping": "label"}})

    assert added.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", added.json()["sys_id"])
    assert wire.password_grant("svc", "pw").status_code == 200
    assert mapped.status_code == inactive.status_code == 200
    assert unknown.status_code == 400 and "no staging table" in unknown.json()["error"]
    assert sandbox.state.imports.transform_map(make.HARDWARE) is None
