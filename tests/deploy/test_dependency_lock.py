"""requirements.lock pins every dependency of pyproject.toml, with hashes, and the Dockerfile
and `make install` (so CI) install from it.

Regenerate it with `make lock` after changing pyproject.toml's dependencies.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
    return [Requirement(r) for r in names]


def locked() -> dict[str, tuple[Requirement, list[str]]]:
    """Each entry of the lock: its requirement (name==version; markers) and its hashes."""
    text = LOCK.read_text().replace("\\\n", " ")
    entries = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = re.split(r"\s+--", line)
        parsed = Requirement(requirement.strip())
        hashes = [o.split(":", 1)[1] for o in options if o.startswith("hash=sha256:")]
        assert not {o for o in options if not o.startswith("hash=")}, f"unexpected options in {line[:80]}"
        entries[canonicalize_name(parsed.name)] = (parsed, hashes)
    return entries


def test_the_lock_pins_every_dependency_and_extra_of_pyproject_within_its_range():
    entries = locked()
    missing = [str(r) for r in declared() if canonicalize_name(r.name) not in entries]
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    for requirement in declared():
        pinned, _ = entries[canonicalize_name(requirement.name)]
        (spec,) = pinned.specifier
        assert spec.operator == "==", f"{pinned} is not pinned"
        assert requirement.specifier.contains(spec.version, prereleases=True), \
            f"the lock's {pinned} is outside pyproject.toml's {requirement} (run `make lock`)"
        for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
            assert canonicalize_name(f"{requirement.name}-{extra}") in entries, f"{requirement}: {extra} not locked"


def test_every_locked_package_is_pinned_with_hashes():
    for name, (pinned, hashes) in locked().items():
        (spec,) = pinned.specifier
        assert spec.operator == "==", f"{name} is not pinned"
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name} has no sha256 hashes"


def test_the_lock_holds_what_this_platform_installs():
    # A universal lock: what a platform does not need carries a marker (pywin32 on Windows).
    here = default_environment()
    needed = {name for name, (pinned, _) in locked().items() if pinned.marker is None or pinned.marker.evaluate(here)}
    assert {"flask", "kafka-python", "sqlalchemy", "pytest", "psycopg-binary"} <= needed


def test_the_dockerfile_and_make_install_install_from_the_lock():
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    assert re.search(r"^COPY .*\brequirements\.lock\b", dockerfile, flags=re.M), "the image needs the lock"
    # Runtime dependencies only (no test tools in the image), at the lock's pins and hashes.
    assert re.search(r"python deploy/locked-requirements\.py > (\S+) .*"
                     r"pip install --require-hashes --no-deps -r \1 .*pip check", dockerfile)
    assert {"!requirements.lock", "!deploy/locked-requirements.py"} <= set((ROOT / ".dockerignore").read_text().split())
    makefile = (ROOT / "Makefile").read_text()
    install = makefile.split("$(BIN)/cityscore:", 1)[1].split("\n\n", 1)[0]
    assert "requirements.lock" in install.splitlines()[0], "a new lock must reinstall"
    assert "pip install --quiet --require-hashes -r requirements.lock" in install
    assert "pip install --quiet --no-deps -e ." in install
    assert re.search(r"^lock:", makefile, flags=re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make install" in ci or "make test" in ci



def test_the_image_gets_the_runtime_part_of_the_lock_and_no_test_tools():
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "locked-requirements.py")], capture_output=True,
                          text=True, check=True)
    entries = locked()
    printed = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", done.stdout.strip()):
        name = canonicalize_name(Requirement(block.split(" \\", 1)[0].strip()).name)
        printed[name] = block
        assert re.findall(r"sha256:([0-9a-f]{64})", block) == entries[name][1], f"{name}: not the lock's hashes"
    runtime = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    assert {canonicalize_name(r.name) for r in runtime} <= set(printed)
    assert {"psycopg-binary", "werkzeug", "jinja2", "pydantic-core", "numpy"} <= set(printed)  # extras, what they pull in
    assert not {"pytest", "selenium", "schemathesis", "hypothesis", "testcontainers", "kubernetes-validate"} & set(printed)
