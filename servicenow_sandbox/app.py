"""The sandbox's Flask app factory and its wire middleware (injected faults, handling-time counters).

The middleware only ever touches the wire endpoints (/api/..., /oauth_*.do); pages and controls stay reachable.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import replace

from flask import Flask
from werkzeug.exceptions import HTTPException

from servicenow_sandbox import api, control, errors, oauth, pages, tables
from servicenow_sandbox.faults import MARKUP, Answer, Failure
from servicenow_sandbox.httpd import DropConnection
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.state import SandboxState

TOKEN_PATHS = ("/oauth_token.do", "/oauth_revoke_token.do")
VERSIONED = re.compile(r"^/api/now/v\d+/")  # /api/now/v2/table/x is /api/now/table/x


def request_kind(path: str) -> str:
    if path.startswith("/api/"):
        return "api"
    if path in TOKEN_PATHS:
        return "token"
    if path.startswith("/sandbox/api/"):
        return "control"
    if path.startswith("/sandbox/static/"):
        return "static"
    return "page"


def _drain(environ: dict) -> None:
    stream = environ.get("wsgi.input")
    while stream is not None and stream.read(65536):
        pass


def _failure_response(failure: Failure, kind: str):
    if kind == "token" and failure.status in (400, 401):
        return errors.grant_refused() if failure.status == 401 else errors.oauth_error(400, "invalid_request", "")
    message = failure.message or errors.DEFAULT_FAULT_MESSAGES.get(failure.status, "Error")
    if failure.markup:
        message = f"{message} {MARKUP}"
    detail = failure.detail if failure.detail is not None else "Injected by the ServiceNow sandbox"
    headers = {}
    if failure.retry_after is not None or failure.status == 429:
        headers["Retry-After"] = str(failure.retry_after if failure.retry_after is not None else 1)
    return errors.api_error(failure.status, message, detail, headers)


def _odd_answer(answer: Answer, environ: dict):
    """The answer of a fault that replaces the real one (hibernation page, login redirect, full queue)."""
    if answer.kind == "hibernating":
        return errors.hibernating()
    if answer.kind.startswith("quota_cancel"):  # status 500: cancelled while queued, so it never ran
        return errors.api_error(500, errors.QUOTA_MESSAGE, errors.QUOTA_DETAIL)
    if answer.kind == "login_redirect":
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        return errors.login_redirect(f"{environ['wsgi.url_scheme']}://{host}")
    return errors.too_many_requests()


class WireMiddleware:
    """Applies faults in the order a real network shows them: drop, latency, odd answer or failure; then times the
    handling. A quota cancellation lets the request run and then spoils its answer."""

    def __init__(self, app, sandbox: SandboxState) -> None:
        self.app = app
        self.sandbox = sandbox

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        environ["PATH_INFO"] = VERSIONED.sub("/api/now/", environ.get("PATH_INFO", ""))
        kind = request_kind(environ["PATH_INFO"])
        faults, metrics = self.sandbox.faults, self.sandbox.metrics
        drop = failure = answer = None
        if kind in ("api", "token"):
            drop = faults.take_drop(kind)
            if drop == "before":
                _drain(environ)
                metrics.fault_applied("dropped")
                raise DropConnection("dropped by the sandbox before handling")
            if faults.latency_ms:
                time.sleep(faults.latency_ms / 1000)
            answer = faults.take_answer(kind)
            failure = faults.take_failure(kind) if answer is None else None
        capacity = faults.capacity if kind == "api" else None
        if capacity is not None and not capacity.enter():
            capacity, answer, failure = None, Answer("too_many_requests", 1), None  # the semaphore queue is full
        started = time.perf_counter()
        try:
            return self._handled(environ, start_response, kind, drop, failure, answer, started)
        finally:
            if capacity is not None:
                capacity.leave(time.perf_counter() - started)

    def _handled(self, environ, start_response, kind, drop, failure, answer, started) -> Iterable[bytes]:
        metrics = self.sandbox.metrics
        status_holder: list[int] = [0]
        held_headers: list = []  # a spoiled answer's headers, sent once its body is known
        spoiled = answer is not None and answer.kind.startswith("quota_cancel") and answer.status == 200

        def recording_start_response(status: str, headers, exc_info=None):
            if spoiled:  # the status and length change once the body is spoiled; see below
                held_headers[:] = headers
                return lambda data: None
            status_holder[0] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info) if drop != "after" else (lambda data: None)

        if failure is not None or (answer is not None and not spoiled):
            metrics.fault_applied("failed_on_purpose")
            _drain(environ)
            made = _failure_response(failure, kind) if failure is not None else _odd_answer(answer, environ)
            body = list(made(environ, recording_start_response))
        else:
            result = self.app(environ, recording_start_response)
            try:
                body = list(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        if spoiled:
            metrics.fault_applied("failed_on_purpose")
            body = [errors.quota_cancelled(b"".join(body), answer.kind == "quota_cancel_malformed")]
            headers = [(name, value) for name, value in held_headers if name.lower() != "content-length"]
            status_holder[0] = 200
            if drop != "after":
                start_response("200 OK", headers)
        metrics.request_done(kind, status_holder[0], time.perf_counter() - started)
        if drop == "after":
            metrics.fault_applied("dropped")
            raise DropConnection("dropped by the sandbox after handling")
        return body


def create_sandbox_app(
    settings: SandboxSettings | None = None, app_xml: str | None = None, **overrides: object
) -> Flask:
    """A sandbox app (seeded users, transform scheduler running): a stock instance, with the update set
    ``app_xml`` (XML text) installed when given.

    The state is `app.extensions["itam_sandbox"]` (a SandboxState); call `state.close()` when done.
    """
    settings = settings or SandboxSettings.from_env()
    if overrides:
        settings = replace(settings, **overrides)
    sandbox = SandboxState(settings, app_xml)
    app = Flask(__name__, static_folder="static", static_url_path="/sandbox/static")
    app.secret_key = secrets.token_hex(32)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["itam_sandbox"] = sandbox
    for blueprint in (api.bp, tables.bp, oauth.bp, control.bp, pages.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, api.api_http_error)
    app.wsgi_app = WireMiddleware(app.wsgi_app, sandbox)  # type: ignore[method-assign]
    return app


def sandbox_state(app: Flask) -> SandboxState:
    """The SandboxState of an app made by create_sandbox_app."""
    return app.extensions["itam_sandbox"]
