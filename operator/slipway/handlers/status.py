"""Writing status once per cycle, and only what changed.

The core returns the whole new status; this module turns it into the
smallest merge patch against what is stored (None deletes a key), so a
steady state produces an empty patch and no API write at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


def dump_status(status: BaseModel) -> dict[str, Any]:
    """The status as the API stores it (camelCase, no empty optionals)."""
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any], owned: set[str]) -> dict[str, Any]:
    """Keys of ``new`` that differ from ``old``, and owned keys that disappeared (as None)."""
    patch: dict[str, Any] = {key: value for key, value in new.items() if old.get(key) != value}
    for key in owned:
        if key in old and key not in new:
            patch[key] = None
    return patch


def owned_keys(model: type[BaseModel]) -> set[str]:
    """The camelCase status keys a status model owns (kopf keeps its own beside them)."""
    return {field.alias or name for name, field in model.model_fields.items()}
