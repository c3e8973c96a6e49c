"""``python -m vadd``: audio-visual discrepancy detection on the embedding cache, and the demo."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def _cmd_eval(args: argparse.Namespace) -> int:
    from vadd.evaluate import evaluate_vadd

    out = Path(args.out) if args.out else Path("cache/runs") / f"vadd-{args.classes}cls"
    extractors = [n for n in args.extractors.split(",") if n] or None
    metrics = evaluate_vadd(args.store, args.classes, out, Path(args.protocol) if args.protocol != "generated" else None,
                            extractors, seed=args.seed)
    print(f"VADD {args.classes}-class: F1 {metrics['f1']:.4f}  precision {metrics['precision']:.4f}  "
          f"recall {metrics['recall']:.4f}  ROC AUC {metrics['roc_auc']}  ({metrics['n_items']} items)")
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from vadd.demo import run_demo

    path = run_demo(device=args.device, clips_per_scene=args.clips_per_scene)
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vadd", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="VADD evaluation on a store (heads trained on its train split)")
    ev.add_argument("--store", default="cache/embeddings.zarr")
    ev.add_argument("--classes", type=int, default=10, choices=[10, 3])
    ev.add_argument("--protocol", default="generated", help="'generated' or a protocol CSV path")
    ev.add_argument("--extractors", default="", help="comma list (default: every extractor in the store)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", default="")
    ev.set_defaults(func=_cmd_eval)
    demo = sub.add_parser("demo", help="the whole pipeline on a small synthetic dataset")
    demo.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    demo.add_argument("--clips-per-scene", type=int, default=10)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
