"""Values put into ServiceNow encoded queries (finding 11 of issue 11): a Username carrying `^` made Test connection
look up another user (`itil^ORuser_name=admin` reported the admin). ServiceNow documents no escape for `^` in a value
(ServiceNow community, "Not all scripted queries can be safely converted to an encoded query": "there is no way I
know of to escape the carat character in encoded query search values"), so such values are refused before sending.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.oauth import Credentials
from itam_admin.servicenow.query import encoded_query_value

USERS_URL = "https://acme.service-now.com/api/now/table/sys_user"


def with_username(creds: Credentials, username: str) -> Credentials:
    return Credentials(creds.instance_url, username, creds.refresh_token, creds.client_id, creds.client_secret, False)


@pytest.mark.parametrize(
    "username",
    [
        "itil^ORuser_name=admin",  # the finding
        "itil^NQuser_name=admin",
        "itil^ORDERBYuser_name",
        "itil^^ORuser_name=admin",  # `^^` is no escape ServiceNow documents
        "itil\nuser_name=admin",
        "javascript:gs.getUserName()",  # ServiceNow runs such a value as a script
    ],
)
def test_a_username_that_could_change_the_query_never_reaches_the_wire(make_client, creds, rsps, username):
    rsps.add(responses.GET, USERS_URL, json={"result": [{"user_name": "admin", "roles": "admin"}]})
    client = make_client(creds=with_username(creds, username))

    with pytest.raises(ServiceNowError) as caught:
        client.check_connection()

    assert caught.value.kind is ErrorKind.INVALID_USERNAME and caught.value.stops_run
    assert "Correct it in the ServiceNow settings" in caught.value.message
    assert len(rsps.calls) == 0  # neither the token endpoint nor the Table API was called


def test_an_ordinary_username_goes_into_the_query_exactly(make_client, creds, rsps, token_endpoint):
    rsps.add(responses.GET, USERS_URL, json={"result": [{"user_name": "o'brien.j@acme.example", "roles": "admin"}]})
    client = make_client(creds=with_username(creds, "o'brien.j@acme.example"))

    assert client.check_connection().user_found

    query = parse_qs(urlsplit(rsps.calls[-1].request.url).query)["sysparm_query"]
    assert query == ["user_name=o'brien.j@acme.example"]


@pytest.mark.parametrize(
    ("value", "in_list", "reason"),
    [
        ("a^b", False, "^"),
        ("", False, "empty"),
        ("a\rb", False, "control character"),
        ("a\x00b", False, "control character"),
        ("a,b", True, "comma"),
        (" JavaScript:gs.getUserID()", False, "javascript:"),
    ],
)
def test_the_shared_helper_refuses_what_would_change_a_query(value, in_list, reason):
    with pytest.raises(ValueError) as caught:
        encoded_query_value(value, in_list=in_list)
    assert reason in str(caught.value)


def test_the_shared_helper_passes_ordinary_values_unchanged():
    assert encoded_query_value("first.last@example.com") == "first.last@example.com"
    assert encoded_query_value("a,b") == "a,b"
    assert encoded_query_value("6816f79cc0a8016401c5a33be04be441", in_list=True) == "6816f79cc0a8016401c5a33be04be441"
