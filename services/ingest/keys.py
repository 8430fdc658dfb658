"""Departments and their API keys: issue, verify, revoke, list.

A key reads `csk_<key id>_<secret>`. The secret is 32 random bytes, shown once when
issued; the database keeps only its SHA-256 (a fast hash is right for a random
secret of that length: there is nothing to guess), so a leaked database leaks no key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.core.catalog import Catalog
from shared.store.engine import utcnow
from shared.store.tables.ingest import ApiKey, Department

PREFIX = "csk_"


class KeyAdminError(ValueError):
    """A department or key operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id and its department."""

    key_id: str
    department: str


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    department: str
    secret: str  # the full key, shown once


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def add_department(session: Session, catalog: Catalog, department_id: str, name: str | None = None) -> Department:
    known = catalog.departments_by_id.get(department_id)
    if known is None:
        listed = ", ".join(sorted(catalog.departments_by_id))
        raise KeyAdminError(f"{department_id!r} is not a department of the {catalog.city} catalog (known: {listed})")
    existing = session.get(Department, department_id)
    if existing is not None:
        return existing
    department = Department(id=department_id, name=name or known.name)
    session.add(department)
    session.flush()
    return department


def issue_key(session: Session, department_id: str, label: str = "") -> IssuedKey:
    if session.get(Department, department_id) is None:
        raise KeyAdminError(f"no department {department_id!r}: add it first with `cityscore departments add`")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    session.add(ApiKey(id=key_id, department_id=department_id, secret_hash=_hash(secret), label=label))
    session.flush()
    return IssuedKey(key_id, department_id, f"{PREFIX}{key_id}_{secret}")


def issue_department_keys(session: Session, catalog: Catalog, departments: list[str] | None = None,
                          label: str = "") -> dict[str, str]:
    """Add these departments (default: every one in the catalog) and issue one key each.

    Returns {department: key}; the caller commits. The demo's simulator, the tests and
    the benchmarks give each department its own key this way.
    """
    ids = [d.id for d in catalog.departments] if departments is None else departments
    keys = {}
    for department_id in ids:
        add_department(session, catalog, department_id)
        keys[department_id] = issue_key(session, department_id, label=label).secret
    return keys


def revoke_key(session: Session, key_id: str) -> datetime:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise KeyAdminError(f"no key {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key.revoked_at


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.department_id, ApiKey.created_at)))


def key_id_of(presented: str) -> str | None:
    """The key id part of a presented key, without checking it (for rate-limit buckets)."""
    if not presented.startswith(PREFIX):
        return None
    key_id, _, secret = presented[len(PREFIX):].partition("_")
    return key_id if key_id and secret else None


def verify_key(session: Session, presented: str | None) -> Caller | None:
    """The caller behind a presented key, or None when it is missing, unknown, wrong or revoked."""
    if not presented:
        return None
    key_id = key_id_of(presented)
    if key_id is None:
        return None
    secret = presented[len(PREFIX) + len(key_id) + 1:]
    key = session.get(ApiKey, key_id)
    # compare_digest even on a miss-shaped path keeps timing from telling ids apart
    expected = key.secret_hash if key is not None else b"\0" * 32
    if not hmac.compare_digest(expected, _hash(secret)) or key is None or key.revoked_at is not None:
        return None
    return Caller(key.id, key.department_id)
