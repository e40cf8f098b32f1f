"""Fixtures of the notification tests: the dispatch suite's world (tests/dispatch/world.py) on a copy
of one migrated SQLite template, the rules' event types staged for the deriver."""

from __future__ import annotations

from tests.dispatch.conftest import make_world, pworld, template_db, world

__all__ = ["make_world", "pworld", "template_db", "world"]
