"""The command line, ``python -m tlhelpers COMMAND …``.

Commands:

``check-data [PATH]``
    open every image of a dataset folder (by default the one :func:`tlhelpers.data.locate`
    finds) and print what is usable; exit status 0 when it can be trained on, 1 when not.

``predict MODEL IMAGE [IMAGE ...] [--top K]``
    classify photos with a file written by :meth:`tlhelpers.classifier.Classifier.save`
    (chapter 4); exit status 0 when every image was classified, 1 when some could not
    be read, 2 when MODEL cannot be used.

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


PREDICT_BATCH = 32


def _format_prediction(path: str, ranked: list[tuple[str, float]]) -> str:
    (best, probability), others = ranked[0], ranked[1:]
    line = f"{path}: {best} ({probability:.1%})"
    if others:
        line += "; " + ", ".join(f"{name} ({p:.1%})" for name, p in others)
    return line


def run_predict(args: argparse.Namespace) -> int:
    from tlhelpers import data, zoo
    from tlhelpers.classifier import Classifier, ClassifierFileError

    try:
        classifier = Classifier.load(args.model)
    except (ClassifierFileError, zoo.WeightsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Backbone: {classifier.backbone.source}")
    failed = 0
    # Read and classify in chunks so that thousands of paths never sit in memory at once.
    for start in range(0, len(args.images), PREDICT_BATCH):
        chunk = args.images[start:start + PREDICT_BATCH]
        pictures: list = []
        for path in chunk:
            try:
                pictures.append(data.load_rgb(path))
            except data.UnreadableImage as error:
                pictures.append(error)
        readable = [picture for picture in pictures if not isinstance(picture, data.UnreadableImage)]
        ranked = iter(classifier.rank(readable, k=args.top) if readable else [])
        for path, picture in zip(chunk, pictures):
            if isinstance(picture, data.UnreadableImage):
                failed += 1
                print(f"{path}: unreadable: {picture.reason}")
            else:
                print(_format_prediction(path, next(ranked)))
    if failed:
        print(f"{failed} of {len(args.images)} images could not be read.")
    return 1 if failed else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_predict_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify photos with a saved classifier (chapter 4)",
        description="Print the classes of each IMAGE, most likely first, with their probabilities, using MODEL, "
        "a file written by tlhelpers.classifier.Classifier.save. Exit status 0 when every image was classified, "
        "1 when some could not be read (each is named with the reason), 2 when MODEL cannot be used.",
    )
    parser.add_argument("model", metavar="MODEL", help="classifier file written by Classifier.save")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument("--top", type=_positive_int, default=None, metavar="K",
                        help="show only the K most likely classes (default: all)")
    parser.set_defaults(handler=run_predict)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_check_data_parser,
    add_predict_parser,
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
