"""The ServiceNow settings form: every field rule of the settings section lives here, nowhere else.

Secrets are never put back into a rendered form: a stored secret renders as MASK, and MASK coming back means
"keep what is stored".
"""

from __future__ import annotations

import unicodedata

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput, ListWidget, PasswordInput

from itam_admin.datatypes import DATA_TYPES
from itam_admin.servicenow.urls import InstanceUrlError, normalise_instance_url
from itam_admin.settings.values import ServiceNowSettings, SettingsChange

MASK = "********"
MAX_USERNAME = 100
MAX_SECRET = 4096


class MaskedSecretInput(PasswordInput):
    """A password input that shows MASK when a secret is stored and never echoes what was typed."""

    def __init__(self) -> None:
        super().__init__(hide_value=True)

    def __call__(self, field, **kwargs):
        # Never echo a typed secret back (after Test connection or a failed save): only the mask, or nothing.
        kwargs["value"] = MASK if getattr(field, "stored", False) else ""
        kwargs.setdefault("autocomplete", "off")
        kwargs.setdefault("spellcheck", "false")
        return super(PasswordInput, self).__call__(field, **kwargs)


class SecretField(StringField):
    """A secret: `new_value` is None when the stored one is kept, else the typed text."""

    widget = MaskedSecretInput()
    stored = False

    @property
    def new_value(self) -> str | None:
        text = (self.data or "").strip()
        if text in ("", MASK) or set(text) == {"*"}:
            return None
        return text


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _no_control_characters(text: str, what: str) -> None:
    # Cc: C0/C1 controls such as a newline; Cf: invisible format characters; Zl/Zp: Unicode line breaks.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise ValidationError(f"{what} must not contain control characters or line breaks.")


class ServiceNowSettingsForm(FlaskForm):
    instance_url = StringField("Instance URL")
    username = StringField("Username")
    token = SecretField("Token")
    use_custom_credentials = BooleanField("Use custom credentials")
    client_id = SecretField("Client ID")
    client_secret = SecretField("Client Secret")
    export_data = MultiCheckboxField(
        "Data to export to ServiceNow", choices=[(data_type.name, data_type.label) for data_type in DATA_TYPES]
    )

    def __init__(self, *args, stored: ServiceNowSettings, allowed_hosts, allow_insecure: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._stored = stored
        self._allowed_hosts = tuple(allowed_hosts)
        self._allow_insecure = allow_insecure
        self.token.stored = stored.has_token
        self.client_id.stored = stored.has_client_id
        self.client_secret.stored = stored.has_client_secret
        self.normalised_instance_url = ""

    @classmethod
    def for_settings(cls, stored: ServiceNowSettings, **kwargs) -> ServiceNowSettingsForm:
        """The form as the page first shows it: stored values, secrets masked."""
        return cls(
            formdata=None,
            data={
                "instance_url": stored.instance_url,
                "username": stored.username,
                "use_custom_credentials": stored.use_custom_credentials,
                "export_data": list(stored.export_data_types),
            },
            stored=stored,
            **kwargs,
        )

    def validate_instance_url(self, field) -> None:
        try:
            self.normalised_instance_url = normalise_instance_url(
                field.data or "", self._allowed_hosts, self._allow_insecure
            )
        except InstanceUrlError as error:
            raise ValidationError(str(error)) from None

    def validate_username(self, field) -> None:
        text = (field.data or "").strip()
        if not text:
            raise ValidationError("Enter the ServiceNow username the token was generated for.")
        if len(text) > MAX_USERNAME:
            raise ValidationError(f"The username is too long (at most {MAX_USERNAME} characters).")
        _no_control_characters(text, "The username")
        if "^" in text:
            # The username goes into a ServiceNow encoded query, where ^ starts another condition (^OR, ^NQ) and
            # cannot be escaped; ServiceNow user IDs do not need it.
            raise ValidationError("The username must not contain ^ (ServiceNow reads it as the start of a condition).")
        if any(ch in text for ch in "<>\"'`"):
            raise ValidationError("The username must not contain < > \" ' or ` characters.")

    def _validate_secret(self, field: SecretField, label: str, required: bool, hint: str) -> None:
        value = field.new_value
        if value is None:
            if required and not field.stored:
                raise ValidationError(hint)
            return
        if len(value) > MAX_SECRET:
            raise ValidationError(f"The {label} is too long (at most {MAX_SECRET} characters).")
        if any(ch.isspace() for ch in value) or any(ord(ch) < 32 for ch in value):
            raise ValidationError(f"The {label} must not contain spaces or line breaks; paste it again.")
        if not value.isascii():
            raise ValidationError(f"The {label} can only contain the characters ServiceNow generates (ASCII).")

    def validate_token(self, field) -> None:
        self._validate_secret(
            field, "token", True, "Paste the refresh token generated on ServiceNow's Generate OAuth Token page."
        )

    def validate_client_id(self, field) -> None:
        if self.use_custom_credentials.data:
            self._validate_secret(field, "Client ID", True, "Enter the Client ID of your ServiceNow OAuth application.")

    def validate_client_secret(self, field) -> None:
        if self.use_custom_credentials.data:
            self._validate_secret(
                field, "Client Secret", True, "Enter the Client Secret of your ServiceNow OAuth application."
            )

    def validate_export_data(self, field) -> None:
        # SelectMultipleField's own pre_validate already refuses values that are not choices.
        field.data = list(dict.fromkeys(field.data or []))

    def change(self) -> SettingsChange:
        """The validated form as a SettingsChange (a None secret keeps the stored one)."""
        return SettingsChange(
            instance_url=self.normalised_instance_url,
            username=(self.username.data or "").strip(),
            use_custom_credentials=bool(self.use_custom_credentials.data),
            export_data_types=tuple(self.export_data.data or ()),
            token=self.token.new_value,
            client_id=self.client_id.new_value,
            client_secret=self.client_secret.new_value,
        )


class ExportForm(FlaskForm):
    full = BooleanField("Full export (send every record, not only what changed)")
