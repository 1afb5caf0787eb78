"""Every check the project runs, in one place: ``scripts/test`` runs them all.

Django 4.2 and 5.2 run on the machine's Python (3.11 here); the newest Django (6.1) needs Python 3.12+,
found on PATH or in pyenv. 5.2 (the current LTS) runs on SQLite, PostgreSQL and MariaDB (mysqlclient), the
others on SQLite.
"""

from __future__ import annotations

import glob
import os
import shutil

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def _python(version: str) -> str:
    """The interpreter for ``version``: a pyenv install if there is one, else ``pythonX.Y`` from PATH.

    pyenv's shims are passed over: a shim answers for every version but runs only the selected ones.
    """
    installed = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    if installed:
        return installed[-1]
    found = shutil.which(f"python{version}")
    return found if found and "/shims/" not in found else version


MATRIX = [
    ("4.2", "3.11", "sqlite"),
    ("5.2", "3.11", "sqlite"),
    ("5.2", "3.11", "postgres"),
    ("5.2", "3.11", "mysql"),
    ("6.1", "3.12", "sqlite"),
]
CONTRIB = ["contrib_plugins/activity-audit-s3", "contrib_plugins/activity-audit-sftp"]


@nox.session(python=_python("3.11"))
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.4")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=_python("3.11"))
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]", "Django>=5.2,<6", *[f"-e{path}" for path in CONTRIB])
    session.run("mypy")


@nox.session(name="tests")
@nox.parametrize(
    ("python", "django", "database"),
    [(_python(py), django, db) for django, py, db in MATRIX],
    ids=[f"django{django}-{db}" for django, _, db in MATRIX],
)
def tests(session: nox.Session, django: str, database: str) -> None:
    session.install(
        "-e", ".[dev]", f"Django~={django}.0", *(["mysqlclient>=2.2.1"] if database == "mysql" else [])
    )
    session.run("python", "-m", "pytest", "tests", env={"AUDIT_TEST_DB": database})


@nox.session(python=_python("3.11"))
def contrib(session: nox.Session) -> None:
    plugins = [path for path in CONTRIB if os.path.isdir(path)]
    session.install("-e", ".[dev]", "Django>=5.2,<6", *[f"-e{path}[test]" for path in plugins])
    if plugins:
        session.run("python", "-m", "pytest", *[f"{path}/tests" for path in plugins])
