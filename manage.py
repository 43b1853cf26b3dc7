#!/usr/bin/env python
"""Django's command-line utility for Walkout."""
import os
import sys


def _missing_table(message: str) -> bool:
    """Whether a database error's first line says a table is missing: SQLite's "no such table: x", PostgreSQL's
    'relation "x" does not exist'."""
    return "no such table" in message or ("relation" in message and "does not exist" in message)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError, ProgrammingError

    try:
        execute_from_command_line(sys.argv)
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if _missing_table(first):  # reached, but never migrated (or behind): not a connection problem
            sys.stderr.write(f"the database is not migrated ({first}); run `python manage.py migrate`\n")
            sys.exit(3)
        if isinstance(exc, ProgrammingError):  # a bug, not the user's setup: the traceback is the report
            raise
        sys.stderr.write(f"walkout cannot reach its database: {first}\n")  # down, or refuses us
        sys.exit(3)
    except ImproperlyConfigured as exc:  # a missing or wrong setting: say which, without a traceback
        sys.stderr.write(f"walkout is not configured: {exc}\n")
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C while Django starts (commands that run long say more themselves)
        sys.stderr.write("interrupted (Ctrl-C)\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
