"""Walkout: the Django project (settings, urls, asgi, celery) and the store's own apps."""
from .celery import app as celery_app

__all__ = ["celery_app"]
