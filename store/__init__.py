"""Walkout: the Django project (settings, urls, asgi, celery) and the store's own apps.

Importing this package does nothing: the Celery application (``store.celery``) is created when Django starts
(``store.apps.WalkoutConfig.ready``) or when ``celery -A store`` loads it, so the pure modules under ``store``
(``store.recording``) can be imported without Django or Celery.
"""
