"""Plumbing shared by every task CLI: common flags, exit codes, one-line errors, progress/quiet logging."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .errors import NFTInputError

__all__ = ["add_common_args", "cli_entry", "setup_logging"]

log = logging.getLogger("nft")


def add_common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--cfg", help="mmengine-style Python config file (default: the embedded default)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--out", help="run directory (written atomically)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--seed", type=int, help="seed for every random choice")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow pickle checkpoints (runs code!)")
    p.add_argument("--quiet", action="store_true", help="logs only, no progress bar")
    return p


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    if quiet:
        logging.getLogger().setLevel(logging.WARNING)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2 (its default code too)
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=description)


def cli_entry(run: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI body: :class:`NFTInputError` -> ``error: <one line>`` on stderr and exit code 2."""
    try:
        return int(run(argv) or 0)
    except NFTInputError as e:
        sys.stderr.write(f"error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
