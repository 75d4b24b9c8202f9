"""Secrets at rest: no plaintext in the database rows, and key rotation leaves them readable with only the new key."""

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import text

from itam_admin.db import db
from tests.integrations.test_access import VALID, save


def raw_rows(app) -> str:
    with app.app_context():
        return " ".join(str(row) for row in db.session.execute(text("select * from compliance_tenant_setting")))


def test_database_rows_hold_no_plaintext_secret(app, client, auth, integrations_page):
    auth.login()
    _, csrf = integrations_page()
    save(client, csrf, use_custom_credentials="y", client_id="raw-client-id", client_secret="raw-client-secret")
    dump = raw_rows(app)
    assert "acme.service-now.com" in dump
    for secret in (VALID["token"], "raw-client-id", "raw-client-secret"):
        assert secret not in dump


def test_rotate_keys_leaves_every_secret_readable_with_only_the_new_key(
    app, app_env, client, auth, integrations_page, tmp_path
):
    from demo_portal import create_app
    from itam_admin.settings.store import load_secrets

    auth.login()
    _, csrf = integrations_page()
    save(client, csrf, use_custom_credentials="y", client_id="rot-client-id", client_secret="rot-client-secret")
    old_key, new_key = app_env["ITAM_ENCRYPTION_KEYS"], Fernet.generate_key().decode()
    before = raw_rows(app)

    rotating = create_app(
        env={**app_env, "ITAM_ENCRYPTION_KEYS": f"{new_key},{old_key}"}, instance_path=str(tmp_path / "r")
    )
    for _ in range(2):  # idempotent
        result = rotating.test_cli_runner().invoke(args=["itam", "rotate-keys"])
        assert result.exit_code == 0 and "Re-encrypted 3 stored secret(s)" in result.output
    assert raw_rows(app) != before

    only_new = create_app(env={**app_env, "ITAM_ENCRYPTION_KEYS": new_key}, instance_path=str(tmp_path / "n"))
    with only_new.app_context():
        secrets = load_secrets("acme")
    assert (secrets.token, secrets.client_id, secrets.client_secret) == (
        VALID["token"],
        "rot-client-id",
        "rot-client-secret",
    )


def test_rotate_keys_is_all_or_nothing_when_a_secret_cannot_be_read(
    app, app_env, client, auth, integrations_page, tmp_path
):
    from demo_portal import create_app

    auth.login()
    _, csrf = integrations_page()
    save(client, csrf)
    before = raw_rows(app)
    stranger = create_app(
        env={**app_env, "ITAM_ENCRYPTION_KEYS": Fernet.generate_key().decode()}, instance_path=str(tmp_path / "s")
    )
    result = stranger.test_cli_runner().invoke(args=["itam", "rotate-keys"])
    assert result.exit_code != 0 and "Nothing was changed" in result.output
    assert raw_rows(app) == before
