"""The ServiceNow sandbox: a local stand-in for a ServiceNow instance (OAuth token endpoint, Import Set API, Table
API, rate limits, injectable faults) for development and tests. The plugin's own code never uses it. It starts as
a stock instance; the connector's side (staging tables, transform maps, token page, OAuth entry) comes only from
installing the connector's update set XML, as on ServiceNow.

Python API (tests; SandboxServer and control.py list the rest)::

    from servicenow_sandbox import SandboxServer

    with SandboxServer() as sandbox:                 # 127.0.0.1, a free port, state in memory, update set installed
        token = sandbox.generate_refresh_token()     # admin/admin, default OAuth client
        sandbox.faults.fail_next(2, status=503)      # also: set_latency, drop_next, set_rate_limit, reject_rows, ...
        ...                                          # point the exporter at sandbox.url
        sandbox.wait_idle()
        sandbox.records("cmdb_ci_computer", "u_source_id=42")

    SandboxServer(stock=True)                        # nothing installed; sandbox.install_update_set(xml_text)

Control endpoint (another process): ``POST /sandbox/api/faults`` with JSON, ``GET /sandbox/api/state``; see
control.py. Command line: ``flask --app wsgi itam sandbox --port 8765`` and ``itam sandbox-fault``, or
``python -m servicenow_sandbox``.
"""

from servicenow_sandbox.accounts import ClientRefused, GrantRefused, OAuthClient
from servicenow_sandbox.app import create_sandbox_app, sandbox_state
from servicenow_sandbox.faults import Faults
from servicenow_sandbox.server import SandboxServer, check_loopback
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.state import SandboxState

__all__ = [
    "ClientRefused",
    "Faults",
    "GrantRefused",
    "OAuthClient",
    "SandboxServer",
    "SandboxSettings",
    "SandboxState",
    "check_loopback",
    "create_sandbox_app",
    "sandbox_state",
]
