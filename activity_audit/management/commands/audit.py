"""``manage.py audit <subcommand>``: look at the audit set-up and check what it wrote.

* ``plugins``: the loaded plugins in call order, where each comes from, and the hooks it implements;
* ``verify [--require-closed] FILE...``: read JSON-lines files and prove, per stream, that no ``seq`` is
  missing or repeated (see :mod:`activity_audit.verify`).

Exit status of ``verify``: 0 when the files hold no gap, no repeat and no unreadable line (a stream without
``PIPELINE_STOPPED`` is reported as open with a warning line, and fails only with ``--require-closed``);
1 when the check fails; 2 when a file cannot be read or the arguments are wrong.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...manager import call_order, describe_plugins, get_plugin_manager
from ...verify import verify_files


class Command(BaseCommand):
    help = "Inspect the audit set-up: 'plugins' lists loaded plugins, 'verify FILE...' checks files for gaps."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True)
        commands.add_parser("plugins", help="list loaded plugins in call order with their hooks")
        verify = commands.add_parser("verify", help="check JSON-lines files for missing or repeated records")
        verify.add_argument(
            "--require-closed",
            action="store_true",
            help="fail when a stream has no PIPELINE_STOPPED record (still running, killed, or cut short)",
        )
        verify.add_argument("files", nargs="+")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "plugins":
            self._plugins()
        else:
            self._verify(options["files"], options["require_closed"])

    def _plugins(self) -> None:
        pm = get_plugin_manager()
        for position, info in enumerate(describe_plugins(pm), start=1):
            self.stdout.write(f"{position}. {info.name} ({info.origin})")
            self.stdout.write(f"     hooks: {', '.join(info.hooks) or '-'}")
        order = call_order(pm)
        if order:
            self.stdout.write("call order of each hook with several implementations:")
            for hook_name, plugins in order:
                self.stdout.write(f"  {hook_name}: {', '.join(plugins)}")

    def _verify(self, files: list[str], require_closed: bool) -> None:
        try:
            report = verify_files(files, require_closed=require_closed)
        except OSError as exc:
            raise CommandError(f"cannot read {exc.filename}: {exc.strerror or exc}", returncode=2) from exc
        for line in report.lines():
            self.stdout.write(line)
        if not report.ok:
            if require_closed:
                raise CommandError("the audit trail has gaps, duplicates, unreadable lines or open streams")
            raise CommandError("the audit trail has gaps, duplicates or unreadable lines")
