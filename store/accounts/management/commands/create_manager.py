"""``python manage.py create_manager EMAIL``: a store manager (staff, not superuser) with the admin permissions a
manager needs (:func:`store.accounts.services.manager_create`). The password never goes on the command line: it is
asked for on the terminal, or read from stdin with ``--password-stdin``, or from an environment variable with
``--password-from-env VAR``; ``--no-input`` never prompts and reads ``WALKOUT_MANAGER_PASSWORD`` (as Django's
``createsuperuser --no-input`` reads ``DJANGO_SUPERUSER_PASSWORD``). Without a terminal and without one of those,
it stops with a message saying so instead of failing on end of input."""
from __future__ import annotations

import getpass
import os
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from store.accounts.services import manager_create

#: The environment variable ``--no-input`` reads the password from.
PASSWORD_ENV = "WALKOUT_MANAGER_PASSWORD"


class Command(BaseCommand):
    help = "Create a store manager account (is_staff, view/change on the store's models, never superuser)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
        source.add_argument("--password-from-env", metavar="VAR",
                            help="read the password from the environment variable VAR")
        source.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                            help=f"never prompt: read the password from ${PASSWORD_ENV}")

    def handle(self, *args, email: str, password_stdin: bool = False, password_from_env: str | None = None,
               interactive: bool = True, **options) -> None:
        password = self._password(password_stdin, password_from_env, interactive)
        if not password:
            raise CommandError("the password is empty")
        try:
            user = manager_create(email=email, password=password)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"manager {user.get_username()} created (id {user.pk})")

    @staticmethod
    def _password(from_stdin: bool, env_var: str | None, interactive: bool) -> str:
        """The password from the chosen source; CommandError (a sentence) when that source has none."""
        if not interactive and env_var is None:
            env_var = PASSWORD_ENV
        if env_var is not None:
            password = os.environ.get(env_var)
            if password is None:
                raise CommandError(f"${env_var} is not set: export the manager's password in it")
            return password
        if from_stdin:
            line = sys.stdin.readline()
            if not line:
                raise CommandError("no password on stdin: pipe it in, e.g. `printf '%s\\n' \"$PW\" | manage.py "
                                   "create_manager EMAIL --password-stdin`")
            return line.rstrip("\n")
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask the password on: pass --password-stdin (and pipe it), "
                               f"--password-from-env VAR, or --no-input with ${PASSWORD_ENV} set")
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Password (again): ")
        except (EOFError, KeyboardInterrupt):
            raise CommandError("no password given") from None
        if password != again:
            raise CommandError("the passwords differ")
        return password
