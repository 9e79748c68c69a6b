"""Entry point of the ``slipway`` command.

Subcommands stay small and delegate: ``crds`` prints or writes the CRDs
generated from the models, ``run`` starts the operator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from slipway.api.crd import all_crds, crd_file_name, render


def _cmd_crds(args: argparse.Namespace) -> int:
    crds = all_crds()
    if args.check is not None:
        return _check_crds(Path(args.check), crds)
    if args.out_dir is not None:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for crd in crds:
            (out / crd_file_name(crd)).write_text(render(crd))
        print(f"wrote {len(crds)} CRDs to {out}", file=sys.stderr)
        return 0
    sys.stdout.write("---\n".join(render(crd) for crd in crds))
    return 0


def _check_crds(folder: Path, crds: list[dict[str, object]]) -> int:
    stale = [
        crd_file_name(crd)
        for crd in crds
        if not (folder / crd_file_name(crd)).exists()
        or (folder / crd_file_name(crd)).read_text() != render(crd)
    ]
    if stale:
        print(
            f"CRDs in {folder} drifted from the models: {', '.join(stale)}; "
            f"run `slipway crds --out-dir {folder}`",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from slipway.handlers.run import run_operator  # kopf is imported only when running

    return run_operator(
        namespaces=args.namespace or [],
        prometheus_url=args.prometheus_url,
        liveness=args.liveness,
        metrics_port=args.metrics_port,
        workers=args.workers,
    )


def _cmd_release_action(args: argparse.Namespace) -> int:
    from slipway.cli.controls import release_action

    print(release_action(args.release, args.namespace, args.command))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from slipway.cli.controls import rollback

    print(rollback(args.modeldeployment, args.namespace, args.to))
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from slipway.cli.controls import describe_release

    print(describe_release(args.release, args.namespace))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slipway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="print the CRD YAML generated from the models")
    crds.add_argument("--out-dir", help="write one file per CRD into this folder")
    crds.add_argument("--check", metavar="DIR", help="exit 1 if DIR differs from the models")
    crds.set_defaults(func=_cmd_crds)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable)"
    )
    run.add_argument(
        "--prometheus-url",
        default=None,
        help="default Prometheus for SLO queries (env SLIPWAY_PROMETHEUS_URL)",
    )
    run.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument("--metrics-port", type=int, default=None, help="serve /metrics on this port")
    run.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="reconcile passes run at once, one model each (default 8; env SLIPWAY_WORKERS)",
    )
    run.set_defaults(func=_cmd_run)

    helps = {
        "promote": "skip the remaining steps and promote the release",
        "abort": "roll the release back now",
        "pause": "hold the release at its current weight",
        "resume": "continue a paused release",
    }
    for action, text in helps.items():
        cmd = sub.add_parser(action, help=text)
        cmd.add_argument("release")
        cmd.add_argument("-n", "--namespace")
        cmd.set_defaults(func=_cmd_release_action)

    back = sub.add_parser(
        "rollback", help="roll a ModelDeployment back to an earlier release, fast"
    )
    back.add_argument("modeldeployment")
    back.add_argument("--to", help="release to return to (default: the previous stable)")
    back.add_argument("-n", "--namespace")
    back.set_defaults(func=_cmd_rollback)

    describe = sub.add_parser("describe", help="phase, weight and every analysis of a release")
    describe.add_argument("release")
    describe.add_argument("-n", "--namespace")
    describe.set_defaults(func=_cmd_describe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
