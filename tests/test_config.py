"""Configuration from the environment: demo defaults, and a clear refusal to start without keys outside demo."""

from __future__ import annotations

import pytest

from itam_admin.config import ConfigError, load_config


def test_outside_demo_mode_the_app_refuses_to_start_and_names_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY and ITAM_ENCRYPTION_KEYS must be set"):
        load_config({}, tmp_path)
    with pytest.raises(ConfigError, match="^ITAM_ENCRYPTION_KEYS must be set"):
        load_config({"SECRET_KEY": "x"}, tmp_path)
    with pytest.raises(ConfigError, match="Fernet keys"):
        load_config({"SECRET_KEY": "x", "ITAM_ENCRYPTION_KEYS": "not-a-key"}, tmp_path)


def test_demo_mode_generates_keys_once_and_keeps_them_under_instance(tmp_path):
    first = load_config({"ITAM_DEMO": "1"}, tmp_path)
    second = load_config({"ITAM_DEMO": "1"}, tmp_path)
    assert first.secret_key == second.secret_key and first.encryption_keys == second.encryption_keys
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert first.allow_insecure
    # The product knows no OAuth client of its own: the demo portal brings the sandbox's (tests/portal).
    assert first.default_client_id == "" and first.default_client_secret == ""
    assert first.database_url.startswith("sqlite:///")


def test_weekly_export_and_numbers_are_checked(tmp_path):
    base = {"ITAM_DEMO": "1"}
    assert str(load_config({**base, "ITAM_WEEKLY_EXPORT": "sun 04:30"}, tmp_path).weekly_export) == "SUN 04:30"
    with pytest.raises(ConfigError, match="ITAM_WEEKLY_EXPORT"):
        load_config({**base, "ITAM_WEEKLY_EXPORT": "Sunday 3am"}, tmp_path)
    with pytest.raises(ConfigError, match="ITAM_EXPORT_BATCH_SIZE"):
        load_config({**base, "ITAM_EXPORT_BATCH_SIZE": "lots"}, tmp_path)


def test_wsgi_refuses_to_start_without_keys(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ITAM_ENCRYPTION_KEYS", "ITAM_DEMO")}
    env["ITAM_INSTANCE_PATH"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "SECRET_KEY and ITAM_ENCRYPTION_KEYS must be set" in result.stderr
