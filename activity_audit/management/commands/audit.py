"""``manage.py audit <subcommand>``: look at the audit set-up and check what it wrote.

* ``plugins``: the loaded plugins in call order, where each comes from, and the hooks it implements;
* ``verify FILE...``: read JSON-lines files and prove, per stream, that no ``seq`` is missing or repeated.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...manager import describe_plugins, get_plugin_manager
from ...verify import verify_files


class Command(BaseCommand):
    help = "Inspect the audit set-up: 'plugins' lists loaded plugins, 'verify FILE...' checks files for gaps."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True)
        commands.add_parser("plugins", help="list loaded plugins in call order with their hooks")
        verify = commands.add_parser("verify", help="check JSON-lines files for missing or repeated records")
        verify.add_argument("files", nargs="+")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "plugins":
            self._plugins()
        else:
            self._verify(options["files"])

    def _plugins(self) -> None:
        for position, info in enumerate(describe_plugins(get_plugin_manager()), start=1):
            self.stdout.write(f"{position}. {info.name} ({info.origin})")
            self.stdout.write(f"     hooks: {', '.join(info.hooks) or '-'}")

    def _verify(self, files: list[str]) -> None:
        report = verify_files(files)
        for line in report.lines():
            self.stdout.write(line)
        if not report.ok:
            raise CommandError("the audit trail has gaps, duplicates or unreadable lines")
