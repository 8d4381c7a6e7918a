"""Command line: ``jaxpot md|minimize|demo|train|eval`` (see docs/cli.md).

Every command exits non-zero with a one-line reason on bad input and never
overwrites an existing run directory unless ``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InputError, Interrupted, SimulationError

INTERRUPTED_EXIT = 130
"""Exit code after SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C)."""


def _run_verb(args, fn, verb: str, restart_what: str, default_dir: str):
    """Shared by ``md`` and ``train``: a fresh run from CONFIG.toml (with
    --directory / --overwrite) or a continuation with --restart DIR.
    Returns (summary, output directory)."""
    from . import io

    if args.restart:
        return fn({}, restart=args.restart, progress=not args.no_progress), args.restart
    if args.config is None:
        raise InputError(f"jaxpot {verb} needs CONFIG.toml (or --restart {restart_what})")
    config = io.read_toml(args.config)
    if args.directory:
        config.setdefault("output", {})["directory"] = args.directory
    summary = fn(config, overwrite=args.overwrite, progress=not args.no_progress,
                 base_dir=Path(args.config).resolve().parent)
    return summary, config.get("output", {}).get("directory", default_dir)


def _md(args) -> int:
    from .simulate import run_md
    from .simulate.output import print_summary

    summary, out_dir = _run_verb(args, run_md, "md", "RUN_DIR", "runs/md")
    print_summary(summary, out_dir)
    return 0


def _minimize(args) -> int:
    from . import io
    from .minimize import print_minimize_summary, run_minimize

    config = io.read_toml(args.config)
    if args.directory:
        config.setdefault("minimize", {})["directory"] = args.directory
    summary = run_minimize(config, overwrite=args.overwrite, base_dir=Path(args.config).resolve().parent)
    print_minimize_summary(summary, config.get("minimize", {}).get("directory", "runs/minimize"))
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.directory, overwrite=args.overwrite, quick=args.quick, progress=not args.no_progress)
    return 0


def _train(args) -> int:
    from .training.fit import train

    summary, out_dir = _run_verb(args, train, "train", "MODEL_DIR", "runs/fit")
    print(f"model directory: {out_dir}")
    if "epochs" in summary and summary.get("stopped_by"):
        print(f"  {summary['epochs']} epochs ({summary['stopped_by']}), best epoch {summary['best_epoch']}, "
              f"{summary['structures_per_second']:.1f} structures/s")
    for split in ("train", "validation", "test"):
        if split in summary:
            e = summary[split]
            print(f"  {split:10s} energy MAE {1000 * e['energy_mae_eV_per_atom']:.2f} meV/atom, "
                  f"forces MAE {1000 * e['forces_mae_eV_per_A']:.1f} meV/A, "
                  f"RMSE {1000 * e['forces_rmse_eV_per_A']:.1f} meV/A ({e['structures']} structures)")
    return 0


def _eval(args) -> int:
    import json

    from .training.fit import eval_model

    errors = eval_model(args.model_dir, args.data, batch_size=args.batch_size, energy_key=args.energy_key,
                        forces_key=args.forces_key, stress_key=args.stress_key)
    if args.json:
        print(json.dumps(errors, indent=2))
    else:
        print(f"{args.data}: {errors['structures']} structures")
        for k, v in errors.items():
            if k != "structures":
                print(f"  {k:26s} {v:.6g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxpot", description="Differentiable MD and PIMD in JAX (metal units).")
    sub = p.add_subparsers(dest="command", required=True)
    md = sub.add_parser("md", help="run NVE, NVT or PIMD from a TOML file")
    md.add_argument("config", nargs="?", help="run configuration (TOML)")
    md.add_argument("--restart", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    md.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    md.add_argument("--directory", help="override [output].directory")
    md.add_argument("--no-progress", action="store_true", help="no progress bar")
    md.set_defaults(fn=_md)
    mn = sub.add_parser("minimize", help="relax a structure (ASE FIRE, BFGS or LBFGS) from a TOML file")
    mn.add_argument("config", help="configuration (TOML): [system], [potential], [minimize]")
    mn.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    mn.add_argument("--directory", help="override [minimize].directory")
    mn.set_defaults(fn=_minimize)
    demo = sub.add_parser("demo", help="the built-in showcase: runs with no files at all")
    demo.add_argument("--directory", default="runs/demo")
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("--quick", action="store_true", help="a shorter run (for tests)")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(fn=_demo)
    train = sub.add_parser("train", help="fit a model (TOML)")
    train.add_argument("config", nargs="?", help="training configuration (TOML)")
    train.add_argument("--restart", metavar="MODEL_DIR", help="continue training from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    train.add_argument("--directory", help="override [output].directory")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(fn=_train)
    ev = sub.add_parser("eval", help="errors of a model on labelled data")
    ev.add_argument("model_dir")
    ev.add_argument("data", help="labelled structures (extxyz)")
    ev.add_argument("--json", action="store_true", help="print the errors as JSON")
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--energy-key", help="info key of the reference energy (default: calculator result)")
    ev.add_argument("--forces-key", help="arrays key of the reference forces")
    ev.add_argument("--stress-key", help="info key of the reference stress")
    ev.set_defaults(fn=_eval)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except Interrupted as err:
        print(f"jaxpot: {err}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except KeyboardInterrupt:
        print("jaxpot: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except InputError as err:
        print(f"jaxpot: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a one-line reason, not a traceback, for run failures
        from .partition import NeighborListOverflow
        if isinstance(err, (SimulationError, NeighborListOverflow)):
            print(f"jaxpot: error: {err}", file=sys.stderr)
            return 1
        raise


def entry() -> None:
    """The ``jaxpot`` console command: restarts once with glibc's huge-page
    malloc tunable (:mod:`jaxpot.runtime`), then runs :func:`main`."""
    from .runtime import relaunch_with_tunables

    relaunch_with_tunables()
    sys.exit(main())


if __name__ == "__main__":
    entry()
