#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")
    # A source checkout is a development machine: manage.py defaults to the local settings.
    # The web and worker entry points keep the production default, and the image sets
    # SWITCHBOARD_ENV=production explicitly, so deployed processes still fail fast.
    os.environ.setdefault("SWITCHBOARD_ENV", "development")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
