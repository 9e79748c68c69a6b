"""Thin kopf handlers: parse, call the pure core, carry out its actions, write status once."""
