"""The ServiceNow app's download on the Integrations tab (SPEC 5a): the Set up ServiceNow step before Instance URL
links to `GET .../servicenow/servicenow-app.xml`, which needs the tab permission and answers the update set for the
operator's default client, with no secret in it.

The unload shape read here (`<unload>`, `sys_update_xml` records whose escaped `payload` is a `<record_update>`) is
ServiceNow's XML unload format as real exports in public repositories show it (SERVICENOW-FACTS, "Update sets")."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.conftest import INTEGRATIONS

DOWNLOAD = f"{INTEGRATIONS}/servicenow/servicenow-app.xml"


def payload_records(unload: ET.Element, table: str) -> list[ET.Element]:
    found = []
    for update in unload.iter("sys_update_xml"):
        for element in ET.fromstring(update.findtext("payload")).iter(table):
            if element.get("action") == "INSERT_OR_UPDATE":
                found.append(element)
    return found


def test_the_tab_shows_set_up_servicenow_with_the_download_before_instance_url(client, auth):
    auth.login()
    html = client.get(INTEGRATIONS).get_data(as_text=True)

    assert "Set up ServiceNow" in html
    assert f'href="{DOWNLOAD}"' in html
    assert html.index('id="setup-servicenow"') < html.index('name="instance_url"')
    start = html.index('id="setup-servicenow-steps"')
    steps = " ".join(html[start : html.index("</ol>", start)].split())
    assert steps.count("<li>") == 4
    assert "Import Update Set from XML" in steps and "Commit Update Set" in steps
    assert "Column mapping Column name" in steps
    assert "u_itam_integration" in steps and "no admin role needed" in steps
    # Strict CSP: the step brings no inline script or style.
    section = html[html.index('id="setup-servicenow"') : html.index("</section>", html.index('id="setup-servicenow"'))]
    assert "<script" not in section and "style=" not in section and "<style" not in section


def test_the_download_is_the_update_set_for_the_operators_default_client_without_a_secret(client, auth):
    auth.login()
    response = client.get(DOWNLOAD)

    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data(as_text=True)
    unload = ET.fromstring(body)  # the standard library parses it
    assert unload.tag == "unload" and len(unload.findall("sys_remote_update_set")) == 1
    (entity,) = payload_records(unload, "oauth_entity")
    assert entity.findtext("client_id") == "default-client"  # ITAM_SERVICENOW_CLIENT_ID of the test app
    assert not (entity.findtext("client_secret") or "").strip()
    assert "default-client-secret" not in body  # ITAM_SERVICENOW_CLIENT_SECRET never leaves the portal
    assert payload_records(unload, "sys_rest_insert_multiple"), "the column-name mapping travels with it"


def test_the_download_needs_the_tab_permission(client, auth):
    assert client.get(DOWNLOAD).status_code == 302  # nobody logged in: to the login page
    auth.login("viewer@acme.example")
    response = client.get(DOWNLOAD)
    assert response.status_code == 403
    assert b"<unload" not in response.get_data()
