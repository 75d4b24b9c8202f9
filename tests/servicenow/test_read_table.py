"""ServiceNowClient.read_table: one Table API read with checked query values, references as plain sys_ids."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from itam_admin.servicenow.errors import ErrorKind, ServiceNowError

TABLE_URL = "https://acme.service-now.com/api/now/table/sys_transform_map"


def test_read_table_asks_for_the_query_fields_and_limit(client, rsps, token_endpoint):
    rsps.add(
        responses.GET,
        TABLE_URL,
        json={"result": [{"sys_id": "abc", "active": "true", "source_table": {"link": "x", "value": "t1"}}]},
    )
    rows = client.read_table(
        "sys_transform_map", {"source_table": "u_itam_contracts", "active": "true"}, ["sys_id", "active"], 1
    )
    assert rows == [{"sys_id": "abc", "active": "true"}]
    params = parse_qs(urlsplit(rsps.calls[-1].request.url).query)
    assert params["sysparm_query"] == ["source_table=u_itam_contracts^active=true"]
    assert params["sysparm_fields"] == ["sys_id,active"]
    assert params["sysparm_limit"] == ["1"]
    assert params["sysparm_exclude_reference_link"] == ["true"]


def test_read_table_gives_references_as_their_sys_id(client, rsps, token_endpoint):
    rsps.add(responses.GET, TABLE_URL, json={"result": [{"source_table": {"link": "x", "value": "t1"}}]})
    assert client.read_table("sys_transform_map", "", ["source_table"]) == [{"source_table": "t1"}]


@pytest.mark.parametrize("value", ["a^active=false", "javascript:gs.getUserID()", "a\nb"])
def test_read_table_refuses_a_value_that_would_change_the_query(client, rsps, value):
    with pytest.raises(ValueError):
        client.read_table("sys_transform_map", {"source_table": value}, ["sys_id"])
    assert not rsps.calls


@pytest.mark.parametrize(("table", "field"), [("../sys_user", "sys_id"), ("sys_user", "name,password")])
def test_read_table_refuses_names_that_are_not_servicenow_names(client, rsps, table, field):
    with pytest.raises(ValueError):
        client.read_table(table, {}, [field])
    assert not rsps.calls


def test_read_table_raises_the_classified_error(client, rsps, token_endpoint, sleeps):
    """Table API answer for an unknown table, as recorded in public answers (SERVICENOW-FACTS, Import Set API):
    400 {"error": {"message": "Invalid table <name>"}, "status": "failure"}."""
    rsps.add(
        responses.GET,
        "https://acme.service-now.com/api/now/table/u_itam_contracts",
        status=400,
        json={"error": {"message": "Invalid table u_itam_contracts", "detail": None}, "status": "failure"},
    )
    with pytest.raises(ServiceNowError) as caught:
        client.read_table("u_itam_contracts", "", ["sys_id"])
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert "Invalid table u_itam_contracts" in (caught.value.detail or "")
    assert not sleeps
