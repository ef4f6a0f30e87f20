"""The `tracegrad` command line."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `tracegrad` command."""
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="tracegrad", description="tracegrad: PyTorch-style tensors and autograd, compiled training steps.")
    parser.add_argument("--version", action="version", version=f"tracegrad {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 user error, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
