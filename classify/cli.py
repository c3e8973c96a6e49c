"""``python -m classify``: train and evaluate heads on the embedding cache (never touches media or models)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def _cmd_train(args: argparse.Namespace) -> int:
    from classify.heads import HeadConfig
    from classify.run import run_training
    from classify.train import TrainConfig

    extractors = [n for n in args.extractors.split(",") if n] if args.extractors else None
    out = Path(args.out) if args.out else Path("cache/runs") / f"{args.head}-{args.classes}cls"
    _, metrics = run_training(
        args.store, extractors, args.classes, HeadConfig(kind=args.head),
        TrainConfig(epochs=args.epochs, seed=args.seed), out,
    )
    print(f"clip accuracy (vote): {metrics['clip_accuracy']:.4f}  second accuracy: {metrics['second_accuracy']:.4f}"
          f"  ({metrics['n_clips']} test clips, {metrics['n_seconds']} seconds)")
    print(format_confusion(metrics["confusion_vote"], metrics["classes"]))
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def format_confusion(confusion: list[list[int]], classes: list[str]) -> str:
    """Text confusion matrix (rows true, columns predicted by clip vote), classes abbreviated to 6 chars."""
    short = [c[:6] for c in classes]
    lines = ["true \\ predicted (clip vote)", " " * 16 + " ".join(f"{c:>6s}" for c in short)]
    lines += [f"{classes[i][:15]:>15s} " + " ".join(f"{v:6d}" for v in row) for i, row in enumerate(confusion)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m classify", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a head on the train split, score the test split")
    train.add_argument("--store", default="cache/embeddings.zarr")
    train.add_argument("--extractors", default="", help="comma list (default: every extractor in the store)")
    train.add_argument("--classes", type=int, default=10, choices=[10, 3])
    train.add_argument("--head", default="mlp", choices=["linear", "mlp"])
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="", help="run folder (default cache/runs/<head>-<classes>cls)")
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
