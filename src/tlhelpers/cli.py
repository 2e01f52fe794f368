"""The command line, ``python -m tlhelpers COMMAND …``.

Commands:

``check-data [PATH]``
    open every image of a dataset folder (by default the one :func:`tlhelpers.data.locate`
    finds) and print what is usable; exit status 0 when it can be trained on, 1 when not.

To add a command, write an ``add_<command>_parser(subparsers)`` function that
registers its arguments and sets ``handler`` (a function ``args -> exit status``),
and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


def run_check_data(args: argparse.Namespace) -> int:
    from tlhelpers import data  # imported here so that `--help` stays fast

    if args.path is None:
        try:
            root = data.locate()
        except data.DataNotFound as error:
            print(error, file=sys.stderr)
            return 1
    else:
        root = args.path
    report = data.check(root)
    print(report.summary())
    return 0 if report.usable else 1


def add_check_data_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-data",
        help="check that a folder of class subfolders holds usable images",
        description="Open every image in PATH/<class>/ and report counts, sizes and unreadable files. "
        "Exit status 0 when the folder can be trained on (at least 2 classes, each with a usable image), 1 when not.",
    )
    parser.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="dataset folder with one subfolder per class (default: the folder tlhelpers.data.locate() finds)",
    )
    parser.set_defaults(handler=run_check_data)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_check_data_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tlhelpers",
        description="Helpers for the book 'Transfer learning with pretrained models in PyTorch'.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (argparse exits with 2 on bad usage)."""
    args = build_parser().parse_args(argv)
    return args.handler(args)
