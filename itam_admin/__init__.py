"""The ITAM ServiceNow Connector plugin: the `ITAMAdmin` extension a host portal mounts with `init_app()`.

The host hands the plugin one callable saying who is asking and the name of the layout template to extend;
the plugin never reads the host's user tables. Importing this package imports nothing else: the names below load
from their modules when a host asks for them, and product modules import those modules directly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from itam_admin.identity import MANAGE_PERMISSION, Identity
    from itam_admin.plugin import ITAMAdmin, current_plugin, package_folder

_EXPORTS = {
    "ITAMAdmin": "itam_admin.plugin",
    "current_plugin": "itam_admin.plugin",
    "package_folder": "itam_admin.plugin",
    "Identity": "itam_admin.identity",
    "MANAGE_PERMISSION": "itam_admin.identity",
}
__all__ = ["ITAMAdmin", "Identity", "MANAGE_PERMISSION", "current_plugin", "package_folder"]  # = _EXPORTS


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'itam_admin' has no attribute {name!r}")
