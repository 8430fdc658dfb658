"""Print the entries of requirements.lock that the services need at run time.

The lock pins everything `make install` and CI install: pyproject.toml's dependencies and
its test extra. The image needs only the first and what they pull in, so the Dockerfile
installs this part of the lock, as it is (versions, markers, hashes), with
`pip install --require-hashes --no-deps` and then `pip check`. The part is found from the
lock's own annotations: an entry belongs to it when it is one of pyproject.toml's
dependencies (with their extras) or is needed ("# via") by an entry that belongs to it.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "cityscore"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(lock: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (the entry's text, the names it is needed by)."""
    found = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", block)
        if not match:
            continue  # the header's comments
        text, _, notes = block.partition("# via")
        parents = {canonical(word.split()[0]) for word in re.findall(r"#?\s*([A-Za-z0-9][^\n#]*)", notes)
                   if not word.startswith("-")}
        found[canonical(match.group(1))] = (text.rstrip(), parents)
    return found


def runtime_part(lock: str, dependencies: list[str]) -> list[str]:
    locked = entries(lock)
    wanted = set()
    for dependency in dependencies:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", dependency)
        wanted.add(canonical(match.group(1)))
        wanted |= {canonical(f"{match.group(1)}-{extra.strip()}") for extra in (match.group(2) or "").split(",")
                   if extra.strip()}
    missing = sorted(name for name in wanted if name not in locked)
    if missing:
        raise SystemExit(f"requirements.lock has no entry for {', '.join(missing)}: run `make lock`")
    grew = True
    while grew:
        more = {name for name, (_, parents) in locked.items() if name not in wanted and parents & wanted}
        wanted |= more
        grew = bool(more)
    return [locked[name][0] for name in sorted(wanted)]


def main() -> int:
    lock = (ROOT / "requirements.lock").read_text()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    print("\n".join(runtime_part(lock, dependencies)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
