"""API keys for agents: generated once, stored as a SHA-256 hash, found by their prefix.

A key is ``mlx_<prefix>_<secret>`` with 256 bits of randomness in the secret. With that much
entropy a fast hash is enough (no dictionary to attack), unlike passwords that need a slow
one; it also keeps each request's check cheap. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from mlexec_app.exceptions import InvalidInput, NotFound
from mlexec_app.models import ApiKey, Project

SCHEME = "mlx"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw() -> tuple[str, str]:
    prefix = secrets.token_hex(6)
    return prefix, f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"


@transaction.atomic
def create_api_key(
    owner: Any, name: str, *, projects: Iterable[Project] = (), all_projects: bool = False
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned here and never again."""
    projects = list(projects)
    if "\x00" in name:
        raise InvalidInput("name contains a NUL character.", code="invalid_text")
    if not all_projects and not projects:
        raise InvalidInput("A key needs projects to reach, or all_projects.", code="key_scope")
    if any(p.owner_id != owner.pk for p in projects):  # type: ignore[attr-defined]
        raise NotFound("No such project.")
    prefix, raw = new_raw()
    key = ApiKey.objects.create(
        owner=owner, name=name, prefix=prefix, hashed_key=hash_key(raw), all_projects=all_projects
    )
    key.projects.set(projects)
    return key, raw


def authenticate(raw: str) -> ApiKey | None:
    """The live key ``raw`` stands for, recording its use; ``None`` if unknown or revoked."""
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != SCHEME:
        return None
    key = ApiKey.objects.select_related("owner").filter(prefix=parts[1]).first()
    if key is None or key.revoked_at is not None or not key.owner.is_active:
        return None
    if not hmac.compare_digest(key.hashed_key, hash_key(raw)):
        return None
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key


def revoke(owner: Any, key_id: int) -> ApiKey:
    key = ApiKey.objects.filter(pk=key_id, owner=owner).first()
    if key is None:
        raise NotFound("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def reachable_projects(key: ApiKey) -> QuerySet[Project]:
    """Projects this key may reach: its owner's, and only those listed unless all_projects."""
    mine = Project.objects.filter(owner=key.owner)
    return mine if key.all_projects else mine.filter(api_keys=key)
