"""The one ``main`` of avscene's command lines (``python -m extract|classify|vadd|demo|bench``) and their parser."""
from __future__ import annotations

import argparse
import logging
import sys

from avscene.errors import AvsceneError

logger = logging.getLogger(__name__)

# What a user's input or environment can cause: avscene's own errors, and the ValueError/OSError of an invalid
# argument or a missing file. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (AvsceneError, ValueError, OSError)


def command_parser(prog: str, description: str | None) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A command line with ``-v/--verbose`` and required sub-commands (each sets ``func``), as :func:`run_cli` runs it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser, parser.add_subparsers(dest="command", required=True)


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` (the parser needs ``-v/--verbose`` and sub-commands that set ``func``), configure logging,
    run ``args.func(args)``; a :data:`USER_ERRORS` error is printed in one line (``error: ...``, with its traceback
    under ``-v``) and gives exit status 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except USER_ERRORS as err:
        logger.debug("%s", type(err).__name__, exc_info=True)
        print("error: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip()), file=sys.stderr)
        return 2
