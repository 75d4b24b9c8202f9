"""Settings saves are atomic per tenant (issue #11, finding 10): parallel saves give no HTTP 500 and leave the values of
one request, on SQLite and PostgreSQL; a locked or unreachable database gives the form back and loses nothing."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from itam_admin.settings.store import load_secrets, load_settings
from tests.conftest import INTEGRATIONS, AuthActions, csrf_token_from
from tests.integrations.test_access import VALID

PARALLEL = 20
UNAVAILABLE = "Could not save the settings right now; try again"
TYPES = ("hardware_inventory", "installed_applications", "contracts")


POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.postgres)
ON_BOTH_DATABASES = pytest.mark.parametrize("database", ["sqlite", POSTGRESQL], indirect=True)


@pytest.fixture
def database(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def app_env(app_env, database, request):
    if database == "postgresql":
        app_env["DATABASE_URL"] = request.getfixturevalue("postgres_database")
    return app_env


def values(i: int, url_choices: int | None = None) -> dict:
    """The form of request i; with url_choices, the Instance URL repeats every url_choices requests."""
    custom = i % 2 == 1
    return {
        "instance_url": f"https://tenant{i % url_choices if url_choices else i}.service-now.com",
        "username": f"user{i}",
        "token": f"refresh-token-number-{i}",
        "export_data": [TYPES[i % 3], TYPES[(i + 1) % 3]] if i % 4 else [TYPES[i % 3]],
        **(
            {"use_custom_credentials": "y", "client_id": f"client-{i}", "client_secret": f"secret-{i}"}
            if custom
            else {}
        ),
    }


def logged_in_clients(app, count: int) -> list:
    clients = []
    for _ in range(count):
        client = app.test_client()
        AuthActions(client).login()
        clients.append(client)
    return clients


def save_in_parallel(app, forms: list[dict]) -> list[object]:
    """Each form posted by its own logged-in browser, all released at once; returns status codes (or exceptions)."""
    clients = logged_in_clients(app, len(forms))
    tokens = [csrf_token_from(c.get(INTEGRATIONS).get_data(as_text=True)) for c in clients]
    barrier = threading.Barrier(len(forms))
    outcomes: list[object] = [None] * len(forms)

    def post(n: int) -> None:
        barrier.wait()
        try:
            response = clients[n].post(f"{INTEGRATIONS}/servicenow", data={**forms[n], "csrf_token": tokens[n]})
            outcomes[n] = response.status_code
        except Exception as error:  # TESTING propagates what would be an HTTP 500
            outcomes[n] = error

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(forms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


def assert_values_of_one_request(app, forms: list[dict]) -> None:
    with app.app_context():
        settings = load_settings("acme")
        secrets = load_secrets("acme")
    winner = int(settings.username.removeprefix("user"))
    form = forms[winner]
    custom = "use_custom_credentials" in form
    assert settings.instance_url == form["instance_url"]
    assert set(settings.export_data_types) == set(form["export_data"])
    assert secrets.token == form["token"]
    assert settings.use_custom_credentials == custom
    assert (secrets.client_id, secrets.client_secret) == (
        (form["client_id"], form["client_secret"]) if custom else ("", "")
    )


@ON_BOTH_DATABASES
def test_parallel_first_saves_give_no_error_and_one_requests_values(app):
    forms = [values(i) for i in range(PARALLEL)]
    outcomes = save_in_parallel(app, forms)
    assert outcomes == [302] * PARALLEL
    assert_values_of_one_request(app, forms)


@ON_BOTH_DATABASES
def test_parallel_updates_leave_one_requests_values(app):
    """Half of the requests send the Instance URL that is stored already: a save that compared with what it read
    before another save committed would keep the other's URL beside its own Username."""
    forms = [values(i, url_choices=2) for i in range(PARALLEL)]
    assert save_in_parallel(app, [forms[0]]) == [302]
    for _ in range(3):
        assert save_in_parallel(app, forms) == [302] * PARALLEL
        assert_values_of_one_request(app, forms)


def _page_after_failed_save(app, client, typed: dict):
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    response = client.post(f"{INTEGRATIONS}/servicenow", data={**typed, "csrf_token": csrf_token_from(page)})
    return response, response.get_data(as_text=True)


TYPED = {
    **VALID,
    "instance_url": "https://typed-while-locked.service-now.com",
    "username": "typed-user",
    "token": "typed-secret-token-value",
}


def assert_form_back_and_nothing_lost(app, response, html: str) -> None:
    assert response.status_code == 503
    assert UNAVAILABLE in html
    assert 'value="https://typed-while-locked.service-now.com"' in html and 'value="typed-user"' in html
    assert "typed-secret-token-value" not in html
    with app.app_context():
        settings = load_settings("acme")
        assert settings.instance_url == VALID["instance_url"] and settings.username == VALID["username"]
        assert load_secrets("acme").token == VALID["token"]


def test_a_locked_sqlite_database_gives_the_form_back(app, client, auth, monkeypatch, tmp_path):
    from itam_admin.settings import store as tenant_settings

    monkeypatch.setattr(tenant_settings, "SAVE_LOCK_WAIT_SECONDS", 0.5, raising=False)
    auth.login()
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    client.post(f"{INTEGRATIONS}/servicenow", data={**VALID, "csrf_token": csrf_token_from(page)})

    holder = sqlite3.connect(tmp_path / "itam.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        response, html = _page_after_failed_save(app, client, TYPED)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_form_back_and_nothing_lost(app, response, html)


@pytest.mark.parametrize("database", [POSTGRESQL], indirect=True)
def test_a_postgresql_tenant_locked_by_another_transaction_gives_the_form_back(app, client, auth, monkeypatch):
    from itam_admin.settings import store as tenant_settings

    monkeypatch.setattr(tenant_settings, "SAVE_LOCK_WAIT_SECONDS", 0.5, raising=False)
    auth.login()
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    client.post(f"{INTEGRATIONS}/servicenow", data={**VALID, "csrf_token": csrf_token_from(page)})

    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    holder = engine.connect()
    holder.execute(sa.text("SELECT id FROM compliance_tenant_setting WHERE tenant_id = 'acme' FOR UPDATE"))
    release = threading.Timer(20, holder.rollback)  # old code waited for ever; let it go on after a while
    release.start()
    try:
        response, html = _page_after_failed_save(app, client, TYPED)
    finally:
        release.cancel()
        holder.rollback()
        holder.close()
        engine.dispose()
    assert_form_back_and_nothing_lost(app, response, html)


def test_an_unreachable_database_at_commit_gives_the_form_back(app, client, auth, monkeypatch):
    auth.login()
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    client.post(f"{INTEGRATIONS}/servicenow", data={**VALID, "csrf_token": csrf_token_from(page)})

    def lost_connection(self):
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(sa.orm.Session, "commit", lost_connection)
    response, html = _page_after_failed_save(app, client, TYPED)
    monkeypatch.undo()
    assert_form_back_and_nothing_lost(app, response, html)
    assert response.headers["Retry-After"]
