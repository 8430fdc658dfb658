"""Fixtures the integration tests share (the real servers themselves come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.fakeslack.notifier_support import Schema


@pytest.fixture
def schema(database_url):
    created = Schema(database_url)
    try:
        yield created
    finally:
        created.drop()
