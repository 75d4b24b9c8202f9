"""The demo portal brings the sandbox's default OAuth client in demo mode; the product itself has none."""

from __future__ import annotations

from demo_portal import create_app
from servicenow_sandbox.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET


def test_demo_mode_uses_the_sandbox_default_client_unless_the_operator_sets_one(tmp_path):
    demo = create_app(env={"ITAM_DEMO": "1", "DATABASE_URL": "sqlite://"}, instance_path=str(tmp_path / "a"))
    config = demo.extensions["itam_admin"].config
    assert (config.default_client_id, config.default_client_secret) == (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)

    own = create_app(
        env={
            "ITAM_DEMO": "1",
            "DATABASE_URL": "sqlite://",
            "ITAM_SERVICENOW_CLIENT_ID": "operators-client",
            "ITAM_SERVICENOW_CLIENT_SECRET": "operators-secret",
        },
        instance_path=str(tmp_path / "b"),
    )
    assert own.extensions["itam_admin"].config.default_client_id == "operators-client"
