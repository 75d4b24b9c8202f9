"""The settings as the rest of the plugin sees them, and the rules that follow from them: when exports are enabled,
and which OAuth client is used (custom credentials, when ticked and stored, take priority over the operator's
default client). Pure data; secrets never show in a repr."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

INSTANCE_URL = "InstanceUrl"
USER_NAME = "UserName"
TOKEN = "Token"
USE_CUSTOM_CREDENTIALS = "UseCustomCredentials"
CLIENT_ID = "ClientId"
CLIENT_SECRET = "ClientSecret"
EXPORT_DATA_TYPES = "ExportDataTypes"
CONFIGURED_AT = "ConfiguredAt"  # first save, never changed: the weekly schedule starts the Sunday after it


@dataclass(frozen=True)
class ServiceNowSettings:
    """What the page and the exporter need to know of a tenant's settings, secrets left out."""

    instance_url: str = ""
    username: str = ""
    has_token: bool = False
    use_custom_credentials: bool = False
    has_client_id: bool = False
    has_client_secret: bool = False
    export_data_types: tuple[str, ...] = ()
    token_saved_at: datetime | None = None
    saved_at: datetime | None = None
    configured_at: datetime | None = None

    @property
    def export_disabled_reason(self) -> str | None:
        missing = [
            label
            for label, present in (
                ("Instance URL", self.instance_url),
                ("Username", self.username),
                ("Token", self.has_token),
            )
            if not present
        ]
        if missing:
            return f"Save {', '.join(missing)} to enable exports."
        if not self.export_data_types:
            return "Choose at least one data type to export, then save."
        return None

    @property
    def export_enabled(self) -> bool:
        return self.export_disabled_reason is None

    @property
    def uses_custom_credentials(self) -> bool:
        """Whether connections use the tenant's own OAuth client (`oauth_client`'s rule, on what is stored)."""
        return oauth_client(self.use_custom_credentials, *self._stored_custom_client(), "", "")[2]

    def _stored_custom_client(self) -> tuple[str, str]:
        # Stand-ins for the stored (encrypted) values: the rule only asks whether each is there.
        return ("stored" if self.has_client_id else "", "stored" if self.has_client_secret else "")


@dataclass(frozen=True)
class Secrets:
    token: str = field(default="", repr=False)
    client_id: str = field(default="", repr=False)
    client_secret: str = field(default="", repr=False)


@dataclass
class SettingsChange:
    """What a Save (or a Test connection) asks for; a secret of None keeps the stored one, an empty string clears
    it. Unticking custom credentials clears the Client ID and Client Secret: they must be typed again to be used."""

    instance_url: str
    username: str
    use_custom_credentials: bool
    export_data_types: tuple[str, ...]
    token: str | None = field(default=None, repr=False)
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.use_custom_credentials:
            self.client_id = self.client_secret = ""


def oauth_client(
    use_custom: bool, custom_id: str, custom_secret: str, default_id: str, default_secret: str
) -> tuple[str, str, bool]:
    """The OAuth client a connection uses, as (client id, client secret, custom): the tenant's own when ticked and
    both are present, else the operator's default."""
    if use_custom and custom_id and custom_secret:
        return custom_id, custom_secret, True
    return default_id, default_secret, False
