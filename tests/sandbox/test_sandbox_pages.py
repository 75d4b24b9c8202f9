"""The sandbox's pages: the Generate OAuth Token page the installed update set brings (as the seed describes it), the
application registry, and the lists of what arrived; plain HTML, escaped, labelled, and working under a strict CSP
(no inline script or style).

Where this differs from the sandbox before issue #13, it follows the update set's own page
(itam_admin.servicenow_app, UI page itam_generate_oauth_token): it lives at /itam_generate_oauth_token.do (the old
/oauth_token_generator.do stays as an alias for the demo), takes an optional Client ID (empty: the update set's OAuth
entry) instead of a list of clients, and gives any local user a token (its processing script makes a password
grant; the user's roles then decide what the token may do), so a least-privileged integration user can get one."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from servicenow_sandbox.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET


class Page(HTMLParser):
    """What a test needs to know of a page: elements by id, labels, forms, scripts and styles."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.label_for: set[str] = set()
        self.fields: list[dict[str, str | None]] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self.links: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        attributes["tag"] = tag
        if "id" in attributes:
            self.by_id[attributes["id"] or ""] = attributes
        if tag == "label" and attributes.get("for"):
            self.label_for.add(attributes["for"] or "")
        if tag in ("input", "select", "textarea") and attributes.get("type") != "hidden":
            self.fields.append(attributes)
        if tag == "script":
            self._in_script = not attributes.get("src")
        if tag == "style" or "style" in attributes or any(name.startswith("on") for name in attributes):
            self.inline_styles += 1
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"] or "")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def csrf(self) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.html)
        assert match, "the form has no CSRF token"
        return match.group(1)


def page(wire, path: str) -> Page:
    response = wire.session.get(f"{wire.url}{path}")
    assert response.status_code == 200, response.text
    assert_strict_page(response)
    return Page(response.text)


def assert_strict_page(response) -> None:
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    parsed = Page(response.text)
    assert parsed.inline_scripts == 0 and parsed.inline_styles == 0
    unlabelled = [f for f in parsed.fields if f.get("id") not in parsed.label_for]
    assert not unlabelled, f"fields without a label: {unlabelled}"


TOKEN_PAGE = "/itam_generate_oauth_token.do"


def generate(wire, username: str, password: str, path: str = TOKEN_PAGE, **extra: str):
    form = page(wire, path)
    data = {"csrf_token": form.csrf(), "username": username, "password": password, **extra}
    return wire.session.post(f"{wire.url}{path}", data=data)


def test_home_page_lists_the_pages(wire):
    home = page(wire, "/")

    assert TOKEN_PAGE in home.links and "/oauth_token_generator.do" in home.links
    assert "/sys_remote_update_set.do" in home.links
    assert "/oauth_entity.do" in home.links
    assert "/cmdb_ci_computer_list.do" in home.links
    assert "/sys_import_set_run_list.do" in home.links
    assert home.by_id["main"]["tag"] == "main"


def test_token_page_has_the_seeds_form(wire):
    form = page(wire, TOKEN_PAGE)

    assert {"username", "password", "client_id"} <= form.label_for
    assert form.by_id["password"]["type"] == "password"
    assert form.by_id["client_id"]["value"] == ""  # empty: the update set's default entry; no client id shown
    assert ">Generate OAuth Token</button>" in form.html
    assert DEMO_CLIENT_ID not in form.html


@pytest.mark.parametrize("path", [TOKEN_PAGE, "/oauth_token_generator.do"])
def test_admin_gets_a_long_refresh_token_at_the_top_ready_to_copy(wire, path):
    response = generate(wire, "admin", "admin", path)

    assert response.status_code == 200
    assert_strict_page(response)
    result = Page(response.text)
    field = result.by_id["refresh-token"]
    assert field["tag"] == "input" and "readonly" in field
    token = field["value"] or ""
    assert len(token) > 60
    assert result.html.index('id="refresh-token"') < result.html.index("<form")
    assert result.by_id["copy-status"]["role"] == "status"
    assert 'data-copy-target="refresh-token"' in result.html
    refreshed = wire.token_request(grant_type="refresh_token", refresh_token=token)
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] == token


def test_copy_script_and_stylesheet_are_static_files(wire):
    script = wire.session.get(f"{wire.url}/sandbox/static/sandbox.js")
    style = wire.session.get(f"{wire.url}/sandbox/static/sandbox.css")

    assert script.status_code == 200 and "clipboard" in script.text
    assert style.status_code == 200


def test_a_least_privileged_user_gets_a_token_whose_roles_decide_what_it_may_do(sandbox, wire, make):
    sandbox.add_user("itam.integration", "secret-pw", roles=["u_itam_integration"])

    token = Page(generate(wire, "itam.integration", "secret-pw").text).by_id["refresh-token"]["value"]
    itil = Page(generate(wire, "itil", "itil").text).by_id["refresh-token"]["value"]

    access = {}
    for name, refresh in (("integration", token), ("itil", itil)):
        grant = wire.token_request(grant_type="refresh_token", refresh_token=refresh).json()
        bearer = {"Authorization": f"Bearer {grant['access_token']}"}
        access[name] = wire.insert_multiple(make.CONTRACTS, [make.contract("1")], user=None, headers=bearer).status_code
    assert access == {"integration": 201, "itil": 403}


def test_wrong_password_is_told_and_gets_no_token(wire):
    response = generate(wire, "admin", "nope")

    assert response.status_code == 401
    assert "refused the username or password" in response.text
    assert "local ServiceNow password" in response.text
    assert 'id="refresh-token"' not in response.text


def test_the_default_entry_without_a_secret_is_told(wire_for):
    """The update set's OAuth entry carries no secret; until the ServiceNow admin sets one, the page says so (the
    update set's processing script gives the same advice)."""
    from itam_admin.servicenow_app import build_update_set
    from servicenow_sandbox import SandboxServer

    with SandboxServer(app=build_update_set("another-operators-client")) as sandbox:
        wire = wire_for(sandbox)
        response = generate(wire, "admin", "admin")
        refused = wire.password_grant(client_id="another-operators-client", client_secret="")

    assert response.status_code == 400
    assert "ITAM Connector default client" in response.text and "has no client secret yet" in response.text
    assert refused.status_code == 401


def test_a_post_without_the_csrf_token_is_refused(wire):
    response = wire.session.post(f"{wire.url}{TOKEN_PAGE}", data={"username": "admin", "password": "admin"})

    assert response.status_code == 400
    assert 'id="refresh-token"' not in response.text


def test_the_token_can_belong_to_another_registered_client(sandbox, wire):
    sandbox.add_client("tenant-app", "tenant-secret", "Tenant app")

    token = Page(generate(wire, "admin", "admin", client_id="tenant-app").text).by_id["refresh-token"]["value"]

    default = wire.token_request(grant_type="refresh_token", refresh_token=token)
    own = wire.token_request(
        grant_type="refresh_token", refresh_token=token, client_id="tenant-app", client_secret="tenant-secret"
    )
    assert default.status_code == 401
    assert own.status_code == 200


def test_clients_page_registers_a_client_without_showing_stored_secrets(wire):
    registry = page(wire, "/oauth_entity.do")
    assert DEMO_CLIENT_ID in registry.html and DEMO_CLIENT_SECRET not in registry.html

    response = wire.session.post(
        f"{wire.url}/oauth_entity.do",
        data={"csrf_token": registry.csrf(), "name": "Mine", "client_id": "mine", "client_secret": "mine-secret"},
    )

    assert response.status_code == 200
    assert_strict_page(response)
    assert wire.password_grant(client_id="mine", client_secret="mine-secret").status_code == 200
    assert "mine-secret" not in page(wire, "/oauth_entity.do").html


def test_record_list_shows_what_arrived_escaped(wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("1", u_name="<script>alert(1)</script>")])

    listing = page(wire, "/cmdb_ci_computer_list.do")

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing.html
    assert "<script>alert" not in listing.html
    assert "1 record." in listing.html


def test_record_list_pages_by_200(wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer(f"{i:03d}") for i in range(250)])

    first = page(wire, "/cmdb_ci_computer_list.do")
    second = page(wire, "/cmdb_ci_computer_list.do?page=2")

    assert "page 1 of 2" in first.html and first.html.count("<tr>") == 201
    assert "/cmdb_ci_computer_list.do?page=2" in first.links
    assert second.html.count("<tr>") == 51


def test_import_set_runs_are_listed(wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("1")])

    runs = page(wire, "/sys_import_set_run_list.do")

    assert "ITAM Hardware Inventory to Computer" in runs.html  # the reference, shown by its display value
    assert "complete" in runs.html


@pytest.mark.parametrize("path", ["/sandbox_token_list.do", "/u_nothing_list.do"])
def test_internal_or_unknown_tables_have_no_list(wire, path):
    assert wire.session.get(f"{wire.url}{path}").status_code == 404
