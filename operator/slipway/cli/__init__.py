"""The ``slipway`` command (also usable as ``kubectl slipway``)."""
