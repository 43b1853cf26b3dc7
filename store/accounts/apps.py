"""Accounts: the Django app configuration."""
from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The accounts app."""

    name = "store.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
