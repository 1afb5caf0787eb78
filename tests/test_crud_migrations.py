"""The package never alters users' models: makemigrations finds nothing to do."""

from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.mark.django_db(databases=["default", "other"])
def test_makemigrations_finds_no_change():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits 1 on any change
