"""The Slipway API: pydantic models are the one source of truth for the CRDs."""
