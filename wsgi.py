"""The demo host portal as a WSGI app: `flask --app wsgi ...` and `gunicorn wsgi:app` use this."""

from itam_admin.portal import create_app

app = create_app()
