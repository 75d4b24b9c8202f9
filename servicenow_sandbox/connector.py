"""The connector's own update set, as a convenience for tests and the command line: what a sandbox installs when
nothing else is said. The install itself only ever takes XML text (state.install_update_set); this module is the
one place the sandbox reaches into the product, and only when asked for the default."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=8)  # the build is deterministic (same client id, same text) and takes a while: every test sandbox
def connector_update_set(default_client_id: str | None) -> str:
    """The XML the Integrations tab offers for download, built for this default OAuth client id."""
    from itam_admin.servicenow_app import build_update_set  # imported on use: the sandbox runs without it otherwise

    return build_update_set(default_client_id)
