"""The demo host portal as a WSGI app: `flask --app wsgi ...` and `gunicorn wsgi:app` use this.

A configuration error stops a `flask` command with one line saying what to set, never a traceback."""

import click

from demo_portal import create_app
from itam_admin.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    if click.get_current_context(silent=True) is None:
        raise  # not a `flask` command (gunicorn, an import): the caller reports it its own way
    # Flask loads this module while it looks up the command (or lists them for --help) and prints a traceback for
    # anything but its own errors: exit here with the one line (status 1).
    raise SystemExit(
        f"Error: the portal is not configured: {error} Every `flask --app wsgi ...` command reads the same settings."
    ) from None
