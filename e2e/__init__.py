"""Whole-scenario helpers for Slipway's demo and e2e tier (cluster launchers live beside)."""
