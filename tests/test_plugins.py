"""Which plugins load, in which order, and what stops start-up.

Order of registration: built-ins, entry points (group ``activity_audit``), ``HOOKS_MODULES``, then
``<app>.audit_hooks``; pluggy calls the last registered first. Entry points come from a real distribution
written into ``tmp_path`` (``*.dist-info`` with ``entry_points.txt``) and found by ``importlib.metadata``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from activity_audit import hookimpl, runtime
from activity_audit.emit import emit_crud
from activity_audit.manager import BUILTIN_PLUGINS, get_plugin_manager, hook_names
from activity_audit.records import new_record
from activity_audit.testing import CapturedRecords, registered_plugin
from tests.plugins.distributions import TRAIL_PLUGIN, Distributions, installed_distributions

HOOKS = ["tests.plugins.hooks_first", "tests.plugins.hooks_second"]
BASE = dict(settings.ACTIVITY_AUDIT)


def audit_settings(**overrides: Any) -> dict[str, Any]:
    return {**BASE, **overrides}


@pytest.fixture
def reload_after() -> Iterator[None]:
    """Rebuild the plugins from the suite's settings after a test that changed what is installed."""
    yield
    runtime.reload()


@pytest.fixture
def distributions(tmp_path: Path) -> Iterator[Distributions]:
    with installed_distributions(tmp_path) as installed:
        yield installed


def emit_traced(audit_records: CapturedRecords) -> dict[str, Any]:
    record = new_record("AUDIT", "tests.plugins", "traced")
    assert emit_crud(record)
    [written] = [r for r in audit_records.records if r["event_id"] == record["event_id"]]
    return written


def registered_names() -> list[str]:
    return [name for name, plugin in get_plugin_manager().list_name_plugin() if plugin is not None]


@pytest.mark.usefixtures("reload_after")
def test_load_order_is_builtins_entry_points_hooks_modules_then_app_hooks(
    distributions: Distributions, audit_records: CapturedRecords
) -> None:
    distributions.add("ep-trail", TRAIL_PLUGIN)
    apps = [*settings.INSTALLED_APPS, "tests.hooksapp"]
    with override_settings(INSTALLED_APPS=apps, ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=HOOKS)):
        expected = [*BUILTIN_PLUGINS, "ep-trail", *HOOKS, "tests.hooksapp.audit_hooks"]
        # Other distributions installed in the environment may add entry points of their own.
        assert [name for name in registered_names() if name in expected] == expected
        # pluggy calls the last registered first: the project's code wins over installed plugins.
        assert emit_traced(audit_records)["redact_trail"] == [
            "tests.hooksapp.audit_hooks",
            "tests.plugins.hooks_second",
            "tests.plugins.hooks_first",
            "ep-trail",
        ]


def test_disabled_plugins_blocks_builtins_entry_points_and_hooks_modules(
    distributions: Distributions, audit_records: CapturedRecords, log_dir: Path
) -> None:
    distributions.add("ep-trail", TRAIL_PLUGIN)
    disabled = ["ep-trail", "tests.plugins.hooks_first", "activity_audit.plugins.file_sink"]
    audit_log_before = (log_dir / "audit.log").read_bytes()
    with override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=HOOKS, DISABLED_PLUGINS=disabled)):
        names = registered_names()
        for name in disabled:
            assert name not in names
        assert "tests.plugins.hooks_second" in names
        written = emit_traced(audit_records)
        assert written["redact_trail"] == ["tests.plugins.hooks_second"]
        assert (log_dir / "audit.log").read_bytes() == audit_log_before  # the file sink is off
    assert "activity_audit.plugins.file_sink" in registered_names()


@pytest.mark.django_db(transaction=True)
def test_disabling_the_crud_plugin_at_a_reload_stops_crud_capture(audit_records: CapturedRecords) -> None:
    from tests.testapp.models import Author

    with override_settings(ACTIVITY_AUDIT=audit_settings(DISABLED_PLUGINS=["activity_audit.crud.plugin"])):
        audit_records.clear()
        Author.objects.create(name="Unaudited")
        Author.objects.update(name="Still unaudited")
        assert audit_records.of("audit.crud") == []
    audit_records.clear()
    author = Author.objects.create(name="Audited again")
    assert [(r["event_type"], r["instance_id"]) for r in audit_records.of("audit.crud")] == [
        ("CREATE", str(author.pk))
    ]


def test_load_entry_points_false_skips_entry_points(
    distributions: Distributions, audit_records: CapturedRecords
) -> None:
    distributions.add("ep-trail", TRAIL_PLUGIN)
    with override_settings(ACTIVITY_AUDIT=audit_settings(LOAD_ENTRY_POINTS=False, HOOKS_MODULES=HOOKS[:1])):
        assert "ep-trail" not in registered_names()
        assert emit_traced(audit_records)["redact_trail"] == ["tests.plugins.hooks_first"]
    with override_settings(ACTIVITY_AUDIT=audit_settings(LOAD_ENTRY_POINTS=True)):
        assert "ep-trail" in registered_names()


def test_an_entry_point_that_fails_to_load_stops_start_up_naming_it(distributions: Distributions) -> None:
    module = distributions.add(
        "ep-broken", "raise RuntimeError('missing licence key')", module="aa_tests_broken"
    )
    with pytest.raises(ImproperlyConfigured) as error, override_settings(ACTIVITY_AUDIT=audit_settings()):
        pass
    assert str(error.value) == (
        f"The activity_audit plugin 'ep-broken' ({module}) failed to load: "
        "RuntimeError: missing licence key. "
        "Uninstall it or add 'ep-broken' to ACTIVITY_AUDIT['DISABLED_PLUGINS']."
    )


@pytest.mark.usefixtures("reload_after")
def test_a_plugin_found_as_an_entry_point_and_a_hooks_module_is_loaded_once(
    distributions: Distributions, audit_records: CapturedRecords
) -> None:
    module = distributions.add("ep-trail", TRAIL_PLUGIN, module="aa_tests_twice")
    with override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=[module])):
        assert "ep-trail" in registered_names() and module not in registered_names()
        assert emit_traced(audit_records)["redact_trail"] == ["ep-trail"]  # its hooks run once


def test_two_plugins_under_one_name_stop_start_up_naming_both(distributions: Distributions) -> None:
    module = distributions.add("tests.plugins.hooks_first", "x = 1", module="aa_tests_same_name")
    settings_with_clash = audit_settings(HOOKS_MODULES=["tests.plugins.hooks_first"])
    with pytest.raises(ImproperlyConfigured) as error, override_settings(ACTIVITY_AUDIT=settings_with_clash):
        pass
    assert str(error.value) == (
        "The activity_audit hooks module 'tests.plugins.hooks_first' (module tests.plugins.hooks_first) has "
        f"the name of another plugin already loaded (module {module}). Uninstall one of them, or add "
        "'tests.plugins.hooks_first' to ACTIVITY_AUDIT['DISABLED_PLUGINS'] to load neither."
    )


def test_a_disabled_entry_point_is_not_even_imported(distributions: Distributions) -> None:
    module = distributions.add("ep-broken", "raise RuntimeError('never imported')", module="aa_tests_broken")
    with override_settings(ACTIVITY_AUDIT=audit_settings(DISABLED_PLUGINS=["ep-broken"])):
        assert module not in sys.modules
        assert "ep-broken" not in registered_names()
        distributions.uninstall()  # before the suite's own settings, which do not disable it, come back


def test_a_hooks_module_that_fails_to_import_stops_start_up_naming_it() -> None:
    with (
        pytest.raises(ImproperlyConfigured) as error,
        override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=["tests.plugins.broken_import"])),
    ):
        pass
    assert str(error.value) == (
        "The audit hooks module 'tests.plugins.broken_import' (from ACTIVITY_AUDIT['HOOKS_MODULES']) "
        "cannot be imported: ModuleNotFoundError: No module named 'activity_audit_no_such_module'"
    )


def test_a_missing_hooks_module_stops_start_up_naming_it() -> None:
    with (
        pytest.raises(
            ImproperlyConfigured,
            match=r"'tests\.plugins\.nowhere' \(from ACTIVITY_AUDIT\['HOOKS_MODULES'\]\)",
        ),
        override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=["tests.plugins.nowhere"])),
    ):
        pass


def test_a_misspelled_hookimpl_stops_start_up_naming_plugin_and_hook() -> None:
    with (
        pytest.raises(ImproperlyConfigured) as error,
        override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=["tests.plugins.misspelled"])),
    ):
        pass
    assert str(error.value) == (
        "The activity_audit plugin 'tests.plugins.misspelled' implements 'sinks', which is not a hook. "
        f"Known hooks: {', '.join(hook_names())}."
    )
    assert "sink" in hook_names()


def test_an_optional_hook_of_a_newer_version_is_accepted() -> None:
    with override_settings(
        ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=["tests.plugins.optional_future_hook"])
    ):
        assert "tests.plugins.optional_future_hook" in registered_names()


def test_an_implementation_with_unknown_arguments_stops_start_up() -> None:
    with (
        pytest.raises(ImproperlyConfigured) as error,
        override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=["tests.plugins.bad_arguments"])),
    ):
        pass
    message = str(error.value)
    assert message.startswith("The activity_audit hooks module 'tests.plugins.bad_arguments' is invalid: ")
    assert "request" in message


def test_start_up_failure_leaves_the_previous_plugins_in_place(audit_records: CapturedRecords) -> None:
    before = registered_names()
    with (
        pytest.raises(ImproperlyConfigured),
        override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=["tests.plugins.misspelled"])),
    ):
        pass
    assert registered_names() == before
    assert emit_traced(audit_records)["message"] == "traced"


def test_a_plugin_registered_at_run_time_survives_reloads() -> None:
    seen: list[str] = []

    class Watcher:
        @hookimpl
        def audit_crud_event(self, record: dict[str, Any]) -> None:
            seen.append(record["message"])

    with registered_plugin(Watcher(), name="tests.watcher"):
        emit_crud(new_record("AUDIT", "tests.plugins", "before"))
        with override_settings(ACTIVITY_AUDIT=audit_settings(HOOKS_MODULES=HOOKS[:1])):
            emit_crud(new_record("AUDIT", "tests.plugins", "during"))
        emit_crud(new_record("AUDIT", "tests.plugins", "after"))
    emit_crud(new_record("AUDIT", "tests.plugins", "unregistered"))
    assert seen == ["before", "during", "after"]
    assert "tests.watcher" not in registered_names()


def test_a_misspelled_hook_on_a_run_time_plugin_is_refused() -> None:
    class Typo:
        @hookimpl
        def redcat(self, record: dict[str, Any]) -> None:
            pass

    with (
        pytest.raises(ImproperlyConfigured, match="implements 'redcat', which is not a hook"),
        registered_plugin(Typo(), name="tests.typo"),
    ):
        pass
    assert "tests.typo" not in registered_names()


@pytest.mark.parametrize(
    "hook_name", ["sink", "audit_request", "audit_crud_event", "audit_shutdown", "audit_after_fork"]
)
@pytest.mark.parametrize("style", ["wrapper", "hookwrapper"])
def test_a_wrapper_on_a_hook_called_one_at_a_time_is_refused(hook_name: str, style: str) -> None:
    def wrapping(**kwargs: Any) -> Iterator[None]:
        yield

    plugin = type("Wrapping", (), {hook_name: staticmethod(hookimpl(**{style: True})(wrapping))})()
    with (
        pytest.raises(ImproperlyConfigured) as error,
        registered_plugin(plugin, name="tests.wrapping"),
    ):
        pass
    assert str(error.value) == (
        f"The activity_audit plugin 'tests.wrapping' declares '{hook_name}' as a hook wrapper, which "
        f"'{hook_name}' does not support: the core calls each of its implementations on its own, so that one "
        "failing never stops the others. Use a plain @hookimpl."
    )
    assert "tests.wrapping" not in registered_names()


def test_a_wrapper_on_redact_is_honoured(audit_records: CapturedRecords) -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def redact(self, record: dict[str, Any]) -> Iterator[None]:
            record["wrapped_before"] = "redacted" not in record
            result = yield
            record["wrapped_after"] = True
            return result

    with registered_plugin(Wrapping(), name="tests.wrapping"):
        emit_crud(new_record("AUDIT", "tests.plugins", "wrapped", changes={"token": "abc"}))
        audit_records.flush()
    (record,) = audit_records.of("tests.plugins")
    assert (record["wrapped_before"], record["wrapped_after"]) == (True, True)
    assert record["changes"] == {"token": "[REDACTED]"}
