"""A fingerprint of the fields Slipway sets on a Service, equal for desired and live.

The live object carries defaults the API server adds (clusterIP, session
affinity, ...); comparing only what Slipway owns tells "nothing to apply"
without remembering what was applied, so a steady state writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def service_fingerprint(body: Mapping[str, Any]) -> str:
    """Hash of the Service's selector, ports and Slipway's labels."""
    spec = body.get("spec") or {}
    labels = (body.get("metadata") or {}).get("labels") or {}
    owned = {
        "selector": spec.get("selector") or {},
        "ports": [
            {key: port.get(key) for key in ("name", "port", "targetPort", "protocol")}
            for port in spec.get("ports") or []
        ],
        "labels": {
            k: v
            for k, v in labels.items()
            if k.startswith(("slipway.dev/", "app.kubernetes.io/managed-by"))
        },
    }
    return hashlib.sha256(json.dumps(owned, sort_keys=True).encode()).hexdigest()[:16]
