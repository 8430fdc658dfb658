"""WSGI entry point for the scorer's read API: `gunicorn -c deploy/gunicorn.conf.py services.scorer.wsgi:app`."""

from shared.platform.logs import configure_logging

from .app import create_app

configure_logging()
app = create_app()
