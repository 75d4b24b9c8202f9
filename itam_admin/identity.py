"""Who is asking: the one thing the host portal tells the plugin about its users; never reads host tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MANAGE_PERMISSION = "integrations.manage"


@dataclass(frozen=True)
class Identity:
    user_id: str
    display_name: str
    tenant_id: str
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def can_manage_integrations(self) -> bool:
        return MANAGE_PERMISSION in self.permissions


IdentityLoader = Callable[[], "Identity | None"]
