"""Slipway: a Kubernetes operator that ships machine-learning models safely.

Teams declare a model's serving unit once (ModelDeployment) and ship each new
version as a ModelRelease; Slipway rolls it out and promotes or rolls back by
itself. The package is split so that decisions stay pure (``rollout``,
``analysis``) and everything that talks to the cluster stays thin (``kube``,
``handlers``).
"""

__version__ = "0.1.0"
