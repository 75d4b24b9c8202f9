"""Settings of one sandbox instance (token lifetimes, payload limit, seeded OAuth client, transform timing); never
read at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# The default OAuth client the sandbox registers, and the demo portal uses when the operator sets none.
DEMO_CLIENT_ID = "itam-demo-client"
DEMO_CLIENT_SECRET = "itam-demo-secret"


CLIENT_ERROR_STYLES = ("servicenow", "rfc")


@dataclass
class SandboxSettings:
    """What a sandbox is seeded with and how it behaves; mutable so tests can change lifetimes at run time."""

    database: str | None = None  # SQLite file path; None keeps the state in memory
    default_client_id: str = DEMO_CLIENT_ID
    default_client_secret: str = field(default=DEMO_CLIENT_SECRET, repr=False)
    access_token_seconds: float = 1800.0
    refresh_token_seconds: float = 100 * 86400.0
    rotate_refresh_tokens: bool = False
    max_payload_bytes: int = 10 * 1024 * 1024
    # The status of the answer to a body over max_payload_bytes (its body is KB0747638's; the status is unverified).
    oversize_status: int = 400
    # ServiceNow answers a wrong client id/secret like any refused grant (401 server_error/access_denied);
    # "rfc" answers 401 invalid_client instead, for clients that want to tell the two apart.
    client_error_style: str = "servicenow"
    insert_multiple_status: int = 201
    default_page_size: int = 10000
    # How long the asynchronous transform of one import set takes, from the moment it may start (after its
    # run_after import set, if any) until its rows are written. Import sets in flight overlap, so they transform
    # concurrently and finish in whatever order their times give. 0 keeps the test suite fast; the CLI defaults
    # to a few seconds. Per staging table overrides (e.g. slow hardware) go in transform_seconds_by_table.
    transform_seconds: float = 0.0
    transform_seconds_by_table: dict[str, float] = field(default_factory=dict)
    # Each import set's time is transform_seconds times a random factor in [1 - jitter, 1 + jitter], so equal
    # import sets sent close together may finish out of order, as ServiceNow's may without run_after.
    transform_jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.client_error_style not in CLIENT_ERROR_STYLES:
            raise ValueError(f"client_error_style must be one of {CLIENT_ERROR_STYLES}")
        if self.transform_seconds < 0 or any(seconds < 0 for seconds in self.transform_seconds_by_table.values()):
            raise ValueError("transform times must be >= 0 seconds")
        if not 0 <= self.transform_jitter < 1:
            raise ValueError("transform_jitter must be at least 0 and below 1")

    def transform_seconds_for(self, staging_table: str) -> float:
        """The nominal transform time of one import set of ``staging_table`` (before jitter)."""
        return float(self.transform_seconds_by_table.get(staging_table, self.transform_seconds))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> SandboxSettings:
        """Settings whose default OAuth client comes from ITAM_SERVICENOW_CLIENT_ID/_SECRET, else the demo client."""
        env = os.environ if env is None else env
        client_id = env.get("ITAM_SERVICENOW_CLIENT_ID", "").strip() or DEMO_CLIENT_ID
        client_secret = env.get("ITAM_SERVICENOW_CLIENT_SECRET", "").strip() or DEMO_CLIENT_SECRET
        values: dict[str, object] = {"default_client_id": client_id, "default_client_secret": client_secret}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
