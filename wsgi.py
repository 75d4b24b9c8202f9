"""The demo host portal as a WSGI app: `flask --app wsgi ...` and `gunicorn wsgi:app` use this."""

from demo_portal import create_app

app = create_app()
