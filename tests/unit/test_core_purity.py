"""shared/core is the pure scoring core that the scorer, the offline command and the tests share.

It may import the standard library, its own modules and the few libraries that describe data
(pydantic, yaml, orjson, holidays), never a database, broker, web or Slack library, nor any
other part of the project: the core is what the rest is built around, so nothing of the rest
may leak into it. Read by parsing each module (nothing is imported), so the test also fails
on an import hidden inside a function.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "shared" / "core"
FORBIDDEN = {"sqlalchemy", "kafka", "flask", "requests", "psycopg", "psycopg2", "slack_sdk", "alembic",
             "apscheduler", "urllib3", "socket", "http", "gunicorn"}
ALLOWED_LIBRARIES = {"pydantic", "yaml", "orjson", "holidays"}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, as (line, absolute dotted name); relative ones resolved."""
    package = ["shared", "core"] + list(path.relative_to(CORE).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            else:
                found.append((node.lineno, node.module))
    return found


def impurities(path: Path) -> list[str]:
    problems = []
    for line, name in imports_of(path):
        top = name.split(".")[0]
        if top == "__future__" or (top in sys.stdlib_module_names and top not in FORBIDDEN):
            continue
        if name == "shared.core" or name.startswith("shared.core."):
            continue
        if top in ALLOWED_LIBRARIES:
            continue
        problems.append(f"{path.name}:{line} imports {name}")
    return problems


MODULES = sorted(CORE.rglob("*.py"))


def test_the_core_has_modules():
    assert {p.name for p in MODULES} >= {"contract.py", "catalog.py", "scoring.py", "folding.py", "business_time.py"}


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_a_core_module_imports_nothing_outside_the_core(module):
    assert impurities(module) == []


@pytest.mark.parametrize("source, expected", [
    ("import sqlalchemy\n", ["x.py:1 imports sqlalchemy"]),
    ("def f():\n    from kafka import KafkaProducer\n", ["x.py:2 imports kafka"]),
    ("from shared.store import db\n", ["x.py:1 imports shared.store"]),
    ("from ..platform.settings import Settings\n", ["x.py:1 imports shared.platform.settings"]),
    ("import socket\n", ["x.py:1 imports socket"]),
    ("from services.scorer import app\n", ["x.py:1 imports services.scorer"]),
    ("from .catalog import Catalog\nimport json\nimport pydantic\n", []),
])
def test_the_check_catches_what_it_is_for(tmp_path, monkeypatch, source, expected):
    """The check itself: each forbidden shape is reported, the allowed ones are not."""
    core = tmp_path / "shared" / "core"
    core.mkdir(parents=True)
    module = core / "x.py"
    module.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "CORE", core)
    assert impurities(module) == expected
