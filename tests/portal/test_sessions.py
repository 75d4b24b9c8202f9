"""The demo portal's session cookie (issue #11, finding 12): Secure over https, HttpOnly and SameSite=Lax, and a
session that ends at logout, so a cookie copied before logging out no longer opens any page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from demo_portal.models import PortalSession
from itam_admin.db import db, utcnow
from tests.conftest import AuthActions, csrf_token_from

HTTPS = "https://portal.example"


def login(client, base_url: str = "http://localhost", headers: dict | None = None):
    """Log in as a browser does; over https it sends the Referer that Flask-WTF's strict CSRF check wants."""
    headers = dict(headers or {})
    if base_url.startswith("https://") or headers.get("X-Forwarded-Proto") == "https":
        headers["Referer"] = base_url.replace("http://", "https://") + "/login"
    page = client.get("/login", base_url=base_url, headers=headers).get_data(as_text=True)
    response = client.post(
        "/login",
        base_url=base_url,
        headers=headers,
        data={"email": "admin@acme.example", "password": "demo", "csrf_token": csrf_token_from(page)},
    )
    assert response.status_code == 302
    return response


def session_cookie_header(response) -> str:
    headers = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    assert headers, "the login set no session cookie"
    return headers[-1]


def flags(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_cookie_is_secure_httponly_and_lax_when_served_over_https(client):
    header = session_cookie_header(login(client, HTTPS))
    assert {"secure", "httponly"} <= flags(header)
    assert "samesite=lax" in header.lower()


def test_cookie_over_plain_http_is_not_secure_so_the_local_demo_works(client):
    header = session_cookie_header(login(client))
    assert "httponly" in flags(header) and "samesite=lax" in header.lower()
    assert "secure" not in flags(header)


def test_cookie_is_secure_everywhere_when_the_public_url_is_https(app_env, tmp_path):
    from demo_portal import create_app

    app = create_app(env={**app_env, "ITAM_PUBLIC_URL": "https://itam.example.com"}, instance_path=str(tmp_path / "p"))
    with app.app_context():
        db.create_all()
        from demo_portal.demo import seed_demo_portal

        seed_demo_portal(hash_method="pbkdf2:sha256:1000")
    try:
        assert "secure" in flags(session_cookie_header(login(app.test_client())))
    finally:
        with app.app_context():
            db.drop_all()
            db.engine.dispose()


@pytest.mark.parametrize(("trusted", "secure"), [("1", True), ("0", False)])
def test_forwarded_https_counts_only_behind_a_trusted_proxy(app_env, tmp_path, trusted, secure):
    from demo_portal import create_app
    from demo_portal.demo import seed_demo_portal

    app = create_app(env={**app_env, "ITAM_TRUSTED_PROXIES": trusted}, instance_path=str(tmp_path / "p"))
    with app.app_context():
        db.create_all()
        seed_demo_portal(hash_method="pbkdf2:sha256:1000")
    try:
        response = login(app.test_client(), headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        assert ("secure" in flags(session_cookie_header(response))) is secure
    finally:
        with app.app_context():
            db.drop_all()
            db.engine.dispose()


def copy_of_session_cookie(app, client):
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def test_a_cookie_copied_before_logout_does_not_work_after_it(app, client):
    login(client)
    thief = copy_of_session_cookie(app, client)
    assert thief.get("/settings/general/integrations").status_code == 200  # the copy works while the session lives

    AuthActions(client).logout()

    for path in ("/", "/settings/general/integrations"):
        response = thief.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/").status_code == 302


def test_logging_out_ends_only_that_session(app, client):
    login(client)
    laptop = app.test_client()
    login(laptop)
    AuthActions(client).logout()
    assert laptop.get("/").status_code == 200
    assert client.get("/").status_code == 302


def test_a_session_ends_twelve_hours_after_login(app, client):
    login(client)
    assert client.get("/").status_code == 200
    with app.app_context():
        db.session.execute(update(PortalSession).values(created_at=utcnow() - timedelta(hours=12, minutes=1)))
        db.session.commit()
    assert client.get("/").status_code == 302


def test_the_database_holds_no_usable_session_token(app, client):
    login(client)
    token_cookie = client.get_cookie("session").value
    with app.app_context():
        ids = [row.id for row in db.session.query(PortalSession)]
    assert len(ids) == 1
    from flask.sessions import SecureCookieSessionInterface

    with app.test_request_context():
        serializer = SecureCookieSessionInterface().get_signing_serializer(app)
        sid = serializer.loads(token_cookie)["sid"]
    assert sid and sid not in ids  # the row holds the token's digest, which opens nothing
