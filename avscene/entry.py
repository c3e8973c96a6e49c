"""The one ``main`` of avscene's command lines (``python -m extract|classify|vadd|demo|bench``) and their parser."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from avscene.errors import AvsceneError

logger = logging.getLogger(__name__)

# What a user's input or environment can cause: avscene's own errors, and the ValueError/OSError of an invalid
# argument or a missing file. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (AvsceneError, ValueError, OSError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program runs so that cleanups run as for Ctrl-C (SIGINT)."""

    signal_number = signal.SIGTERM


def command_parser(prog: str, description: str | None) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A command line with ``-v/--verbose`` and required sub-commands (each sets ``func``), as :func:`run_cli` runs it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser, parser.add_subparsers(dest="command", required=True)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` (main thread only; the handler is restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` (the parser needs ``-v/--verbose`` and sub-commands that set ``func``), configure logging,
    run ``args.func(args)``; a :data:`USER_ERRORS` error is printed in one line (``error: ...``, with its traceback
    under ``-v``) and gives exit status 2. Ctrl-C (SIGINT) and SIGTERM stop the command with one line and exit status
    128 + the signal's number (130, 143); what the command had finished is kept (stores commit block by block, run
    folders are renamed into place only when whole: :mod:`avscene.run_folder`)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _sigterm_raises():
            return args.func(args)
    except USER_ERRORS as err:
        logger.debug("%s", type(err).__name__, exc_info=True)
        print("error: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip()), file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        logger.debug("interrupted", exc_info=True)
        number = getattr(err, "signal_number", signal.SIGINT)
        print(f"interrupted ({signal.Signals(number).name}): stopped; finished work is kept, the unfinished part was "
              "discarded (run the command again to redo it)", file=sys.stderr)
        return 128 + number
