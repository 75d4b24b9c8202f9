"""A database that does not answer while the tab is built or saved: a clear 503 page, nothing stored changed."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from itam_admin.settings.store import load_settings

INTEGRATIONS = "/settings/general/integrations"


def test_an_unreachable_database_gives_a_clear_page_and_loses_no_setting(
    app, client, auth, integrations_page, monkeypatch
):
    auth.login()
    _, csrf = integrations_page()
    form = {
        "csrf_token": csrf,
        "instance_url": "https://acme.service-now.com",
        "username": "itam.export",
        "token": "refresh-token-0001",
        "export_data": ["hardware_inventory"],
    }
    assert client.post(f"{INTEGRATIONS}/servicenow", data=form).status_code == 302

    from itam_admin.integrations import views

    def down(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))

    monkeypatch.setattr(views, "load_settings", down)
    for response in (
        client.get(INTEGRATIONS),
        client.post(f"{INTEGRATIONS}/servicenow", data={**form, "username": "someone.else"}),
    ):
        page = response.get_data(as_text=True)
        assert response.status_code == 503 and response.headers["Retry-After"] == "30"
        assert "database is not reachable right now" in page and "Nothing was changed" in page
        assert "could not connect" not in page  # the driver's words stay in the log
    monkeypatch.undo()
    with app.app_context():
        assert load_settings("acme").username == "itam.export"
