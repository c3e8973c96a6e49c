"""The ``avscene`` command: ``avscene extract|classify|vadd|demo|serve|bench ...``, each (but serve) the same as
``python -m <stage>``."""
from __future__ import annotations

import importlib
import sys

from avscene.paths import REPO_ROOT, in_checkout

# sub-command -> the module whose ``main(argv) -> int`` runs it
COMMANDS = {
    "extract": ("extract.cli", "stage 1: embed a dataset into a store, manage weights, inspect/verify stores"),
    "classify": ("classify.cli", "stage 2: train fusion heads on a store, ablations, predict, fine-tune"),
    "vadd": ("vadd.cli", "audio-visual discrepancy detection: evaluate a protocol, check videos"),
    "demo": ("avscene.demo.cli", "the whole pipeline on a small SYNTHETIC dataset"),
    "serve": ("avscene.service.cli", "vadd check as an HTTP service (FastAPI + uvicorn; extra 'serve')"),
    "bench": ("bench.cli", "benchmarks (source checkout only) -> bench/results.{json,md}"),
}


def usage() -> str:
    lines = ["usage: avscene {" + ",".join(COMMANDS) + "} ...", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`avscene COMMAND --help` lists a command's sub-commands and options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the sub-command's own command line."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if name == "bench" and not in_checkout():
        print(f"error: `avscene bench` runs from a source checkout (its bench/ folder); {REPO_ROOT} is not one",
              file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(rest)
