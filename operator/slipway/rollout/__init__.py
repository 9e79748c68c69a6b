"""The pure decision core: (spec, observed state, verdicts, now) -> (status, actions).

Nothing here talks to the cluster or reads a clock; the handlers pass ``now``
and the observed state in and carry the actions out. That is what lets the
core be tested densely and a restarted operator resume exactly where it was.
"""
