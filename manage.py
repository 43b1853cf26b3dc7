#!/usr/bin/env python
"""Django's command-line utility for Walkout."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "store.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a missing or wrong setting: say which, without a traceback
        sys.stderr.write(f"walkout is not configured: {exc}\n")
        sys.exit(2)
    except OperationalError as exc:  # the database is down or refuses us: say so in words, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.stderr.write(f"walkout cannot reach its database: {first}\n")
        sys.exit(3)
    except KeyboardInterrupt:  # Ctrl-C while Django starts (commands that run long say more themselves)
        sys.stderr.write("interrupted (Ctrl-C)\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
