"""WSGI entry point for gunicorn: `gunicorn -c deploy/gunicorn.conf.py services.ingest.wsgi:app`."""

from shared.platform.logs import configure_logging

from .app import create_app

configure_logging()
app = create_app()
