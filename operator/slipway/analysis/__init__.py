"""SLO analysis: from PromQL templates to per-SLO verdicts.

Rollouts are only as safe as the judgement behind them, so this package keeps
that judgement small, pure and explainable:

- ``templates`` renders an SLO's PromQL template for one release, escaping
  every substituted value so a release name can never change a query;
- ``verdicts`` turns measured numbers into Pass / Fail / Inconclusive with the
  threshold and a sentence a person can read (pure, no I/O);
- ``provider`` is the one seam to a metrics backend (Prometheus first), which
  reports "no data" and "unreachable" as results, never as exceptions;
- ``analyze`` runs one tick: render, query (as few times as possible), judge.

Inconclusive is never a pass: missing data, too few samples, a missing
baseline or an unreachable backend all hold a rollout rather than promote it.
"""
