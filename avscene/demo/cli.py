"""``python -m avscene.demo``: the whole pipeline on a small SYNTHETIC dataset (``run``), or only write that dataset (``synth``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from avscene.entry import command_parser, run_cli


def _cmd_run(args: argparse.Namespace) -> int:
    from avscene.demo.run import run_demo

    path = run_demo(device=args.device, clips_per_scene=args.clips_per_scene)
    print(f"report: {path}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from avscene.demo.synthetic import make_demo_dataset

    root = make_demo_dataset(Path(args.out), clips_per_scene=args.clips_per_scene, seconds=args.seconds, seed=args.seed)
    print(f"synthetic dataset (not real TAU data): {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser("python -m avscene.demo", __doc__)
    run = sub.add_parser("run", help="generate the dataset, extract, train, run VADD -> cache/demo/report.json")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--clips-per-scene", type=int, default=10)
    run.set_defaults(func=_cmd_run)
    synth = sub.add_parser("synth", help="write a small SYNTHETIC TAU-layout dataset (demo, tests)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--clips-per-scene", type=int, default=6)
    synth.add_argument("--seconds", type=int, default=10)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
