"""The Table API reads like ServiceNow's: encoded queries, fields, paging with Link and X-Total-Count, display
values and reference links, and errors in ServiceNow's shape."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def computers(wire, make):
    """Ten computers PC-00..PC-09; odd ones retired, RAM 1000*i."""
    records = [
        make.computer(
            f"{i:02d}",
            u_name=f"PC-{i:02d}",
            u_ram_mb=str(1000 * i),
            u_operational_status="retired" if i % 2 else "operational",
        )
        for i in range(10)
    ]
    wire.send_and_wait(make.HARDWARE, records)
    return records


def names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()["result"]]


def query(wire, text: str, **params) -> list[str]:
    params = {"sysparm_query": text, "sysparm_fields": "name", **params}
    return names(wire.get("/api/now/table/cmdb_ci_computer", params=params))


@pytest.mark.usefixtures("computers")
@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("name=PC-03", ["PC-03"]),
        ("install_status=7^nameSTARTSWITHPC-0^ram>=5000", ["PC-05", "PC-07", "PC-09"]),
        ("name!=PC-00^ram<3000", ["PC-01", "PC-02"]),
        ("nameINPC-01,PC-04,PC-99", ["PC-01", "PC-04"]),
        ("name=PC-01^ORname=PC-02", ["PC-01", "PC-02"]),
        ("name=PC-01^NQname=PC-08", ["PC-01", "PC-08"]),
        ("nameLIKE-0^nameENDSWITH5", ["PC-05"]),
        ("no_such_field=1^name=PC-04", ["PC-04"]),  # ServiceNow ignores a condition on an unknown field
        ("ram>8000", ["PC-09"]),  # integer columns compare as numbers
    ],
)
def test_encoded_queries_filter(wire, encoded, expected):
    assert query(wire, encoded + "^ORDERBYname") == expected


@pytest.mark.usefixtures("computers")
def test_orderby_and_orderbydesc(wire):
    assert query(wire, "ORDERBYDESCname", sysparm_limit=3) == ["PC-09", "PC-08", "PC-07"]
    assert query(wire, "install_status=1^ORDERBYDESCram", sysparm_limit=2) == ["PC-08", "PC-06"]


@pytest.mark.usefixtures("computers")
def test_fields_limit_the_columns(wire):
    response = wire.get("/api/now/table/cmdb_ci_computer", params={"sysparm_fields": "name,ram", "sysparm_limit": 1})

    assert list(response.json()["result"][0]) == ["name", "ram"]
    assert isinstance(response.json()["result"][0]["ram"], str)


@pytest.mark.usefixtures("computers")
def test_paging_gives_x_total_count_and_link_rels(wire):
    response = wire.get(
        "/api/now/table/cmdb_ci_computer",
        params={"sysparm_query": "ORDERBYname", "sysparm_limit": 3, "sysparm_offset": 3, "sysparm_fields": "name"},
    )

    assert names(response) == ["PC-03", "PC-04", "PC-05"]
    assert response.headers["X-Total-Count"] == "10"
    links = dict((rel, url) for url, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', response.headers["Link"]))
    assert set(links) == {"first", "prev", "next", "last"}
    assert "sysparm_offset=0" in links["first"] and "sysparm_offset=6" in links["next"]
    assert "sysparm_offset=9" in links["last"] and "sysparm_offset=0" in links["prev"]
    assert names(wire.session.get(links["next"], headers={"Authorization": f"Bearer {wire.access_token()}"})) == [
        "PC-06",
        "PC-07",
        "PC-08",
    ]


@pytest.mark.usefixtures("computers")
def test_first_page_has_no_prev_and_last_page_no_next(wire):
    first = wire.get("/api/now/table/cmdb_ci_computer", params={"sysparm_limit": 5})
    last = wire.get("/api/now/table/cmdb_ci_computer", params={"sysparm_limit": 5, "sysparm_offset": 5})

    assert 'rel="prev"' not in first.headers["Link"] and 'rel="next"' in first.headers["Link"]
    assert 'rel="next"' not in last.headers["Link"] and 'rel="prev"' in last.headers["Link"]


@pytest.mark.usefixtures("computers")
def test_pagination_header_can_be_suppressed_but_total_count_stays(wire):
    response = wire.get(
        "/api/now/table/cmdb_ci_computer", params={"sysparm_limit": 2, "sysparm_suppress_pagination_header": "true"}
    )

    assert "Link" not in response.headers
    assert response.headers["X-Total-Count"] == "10"


def test_display_values_and_reference_links(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("pc", u_name="Laptop", u_operational_status="retired")])
    wire.send_and_wait(make.INSTALLS, [make.install("i", "pc")])
    (pc,) = sandbox.records("cmdb_ci_computer")
    path = "/api/now/table/cmdb_sam_sw_install"

    raw = wire.get(path).json()["result"][0]
    excluded = wire.get(path, params={"sysparm_exclude_reference_link": "true"}).json()["result"][0]
    display = wire.get(path, params={"sysparm_display_value": "true"}).json()["result"][0]
    both = wire.get(path, params={"sysparm_display_value": "all", "sysparm_exclude_reference_link": "true"}).json()

    assert raw["installed_on"] == {
        "link": f"{wire.url}/api/now/table/cmdb_ci_computer/{pc['sys_id']}",
        "value": pc["sys_id"],
    }
    assert excluded["installed_on"] == pc["sys_id"]
    assert display["installed_on"]["value"] == "Laptop"
    assert both["result"][0]["installed_on"] == {"display_value": "Laptop", "value": pc["sys_id"]}
    retired = wire.get("/api/now/table/cmdb_ci_computer", params={"sysparm_display_value": "true"}).json()
    assert retired["result"][0]["install_status"] == "Retired"


def test_get_one_record_by_sys_id(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("1")])
    (pc,) = sandbox.records("cmdb_ci_computer")

    response = wire.get(f"/api/now/table/cmdb_ci_computer/{pc['sys_id']}")

    assert response.status_code == 200
    assert response.json()["result"]["u_source_id"] == "1"


def test_unknown_sys_id_gets_404_no_record(wire):
    response = wire.get("/api/now/table/cmdb_ci_computer/" + "0" * 32)

    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"},
        "status": "failure",
    }


def test_unknown_table_gets_400_invalid_table(wire):
    """ServiceNow answers 400 for a table it does not have (recorded answers, SERVICENOW-FACTS), not 404."""
    response = wire.get("/api/now/table/u_nothing_here")

    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "Invalid table u_nothing_here", "detail": None},
        "status": "failure",
    }


def test_current_user_is_readable_from_sys_user(wire):
    response = wire.get(
        "/api/now/table/sys_user", user="itil", params={"sysparm_query": "user_name=itil", "sysparm_limit": 1}
    )

    (user,) = response.json()["result"]
    assert user["user_name"] == "itil"
    assert user["name"] == "ITIL User"
    assert user["roles"] == "itil"
    assert "password" not in str(user).lower()


def test_basic_auth_is_accepted_too(wire):
    response = wire.get("/api/now/table/sys_user", user=None, auth=("admin", "admin"))

    assert response.status_code == 200
    assert wire.get("/api/now/table/sys_user", user=None, auth=("admin", "nope")).status_code == 401


def test_versioned_urls_work(wire):
    assert wire.get("/api/now/v2/table/sys_user").status_code == 200
    assert wire.get("/api/now/v1/table/sys_user").status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Token abc"])
def test_missing_or_invalid_token_gets_401(wire, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = wire.get("/api/now/table/sys_user", user=None, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    }


def test_expired_access_token_gets_401_and_a_refresh_fixes_it(sandbox, wire):
    body = wire.password_grant().json()
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    sandbox.expire_tokens(user="admin")

    assert wire.get("/api/now/table/sys_user", user=None, headers=bearer).status_code == 401
    fresh = wire.token_request(grant_type="refresh_token", refresh_token=body["refresh_token"]).json()
    again = wire.get("/api/now/table/sys_user", user=None, headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert again.status_code == 200


def test_unknown_api_path_gets_servicenows_400(wire):
    response = wire.get("/api/now/nothing/here")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Requested URI does not represent any resource"


def test_writing_through_the_table_api_is_not_supported(wire):
    response = wire.call("POST", "/api/now/table/cmdb_ci_computer", json={"name": "x"})

    assert response.status_code == 405
    assert response.json()["status"] == "failure"
