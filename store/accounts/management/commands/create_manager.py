"""``python manage.py create_manager EMAIL``: a store manager (staff, not superuser) with the admin permissions a
manager needs (:func:`store.accounts.services.manager_create`). The password is asked for, or read from stdin with
``--password-stdin`` (scripts); it never goes on the command line."""
from __future__ import annotations

import getpass
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from store.accounts.services import manager_create


class Command(BaseCommand):
    help = "Create a store manager account (is_staff, view/change on the store's models, never superuser)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    def handle(self, *args, email: str, password_stdin: bool, **options) -> None:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("the passwords differ")
        try:
            user = manager_create(email=email, password=password)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"manager {user.get_username()} created (id {user.pk})")
