"""Real installed distributions, written on the fly, for tests of entry-point loading."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from activity_audit import runtime

# An entry-point plugin that marks the test records it redacts.
TRAIL_PLUGIN = """
    from activity_audit import hookimpl
    from tests.plugins.trail import mark

    @hookimpl
    def redact(record):
        mark(record, "ep-trail")
"""


class Distributions:
    """Installed distributions written into a directory on ``sys.path``, each with one entry point."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()

    def add(self, entry_point: str, body: str, module: str = "aa_tests_plugin") -> str:
        package = self.root / module
        package.mkdir()
        (package / "__init__.py").write_text(textwrap.dedent(body))
        info = self.root / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[activity_audit]\n{entry_point} = {module}\n")
        self.modules.append(module)
        return module

    def uninstall(self) -> None:
        if str(self.root) in sys.path:
            sys.path.remove(str(self.root))
        for module in self.modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()


@contextmanager
def installed_distributions(root: Path) -> Iterator[Distributions]:
    """Distributions installed in ``root`` for the block; the plugins are rebuilt without them afterwards."""
    installed = Distributions(root)
    try:
        yield installed
    finally:
        installed.uninstall()
        runtime.reload()
