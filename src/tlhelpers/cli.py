"""The command line, ``python -m tlhelpers COMMAND …``.

Commands:

``check-data [PATH]``
    open every image of a dataset folder (by default the one :func:`tlhelpers.data.locate`
    finds) and print what is usable; exit status 0 when it can be trained on, 1 when not.

``predict MODEL IMAGE [IMAGE ...] [--top K]``
    classify photos with a file written by :meth:`tlhelpers.heads.Classifier.save`
    (chapter 4) or an ONNX file written by ``export`` (chapter 7);
    exit status 0 when every image was classified, 1 when some could not
    be read, 2 when MODEL cannot be used.

``train FOLDER [-o MODEL] [--backbone NAME] …``
    chapter 4's recipe on a folder with one subfolder per class: check it, split it,
    extract and cache features, train a head, print validation and test accuracy and
    a confusion matrix, and write MODEL for ``predict`` (chapter 7); exit status 0 when
    MODEL was written, 1 when the folder cannot be trained on, 2 when MODEL cannot be
    written or the backbone is not available.

``export MODEL --onnx OUT [--int8] [--calibration FOLDER]``
    write MODEL (a classifier file) as one ONNX file that runs without PyTorch, optionally
    quantized to int8 (chapter 7); exit status 0 when OUT was written, 2 when MODEL cannot
    be used or OUT cannot be written.

To add a command, write an ``add_<command>_parser(subparsers)`` function that
registers its arguments and sets ``handler`` (a function ``args -> exit status``),
and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from tlhelpers import optional


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


def _report_saved(path: Path, detail: str) -> None:
    """The last line of ``train`` and ``export``: what was written, and how to use it."""
    print(f"Saved {path} ({detail}). Classify photos with: python -m tlhelpers predict {path} PHOTO ...")


def run_predict(args: argparse.Namespace) -> int:
    from tlhelpers import data, zoo
    from tlhelpers.heads import Classifier, ClassifierFileError

    if str(args.model).lower().endswith(".onnx"):
        from tlhelpers import onnx_inference

        try:
            classifier = onnx_inference.OnnxClassifier(args.model)
        except (onnx_inference.OnnxFileError, ImportError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"Backbone: {classifier.source} [ONNX, {classifier.variant}]")
    else:
        try:
            classifier = Classifier.load(args.model)
        except (ClassifierFileError, zoo.WeightsUnavailable) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"Backbone: {classifier.backbone.source}")
    failed = 0
    # Read and classify in chunks so that thousands of paths never sit in memory at once.
    for start in range(0, len(args.images), PREDICT_BATCH):
        chunk = args.images[start : start + PREDICT_BATCH]
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
        "a file written by tlhelpers.heads.Classifier.save or 'train', or an .onnx file written by "
        "'export' (run with onnxruntime). Exit status 0 when every image was classified, "
        "1 when some could not be read (each is named with the reason), 2 when MODEL cannot be used.",
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="classifier file written by Classifier.save or 'train', or an .onnx file from 'export'",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument(
        "--top",
        type=_positive_int,
        default=None,
        metavar="K",
        help="show only the K most likely classes (default: all)",
    )
    parser.set_defaults(handler=run_predict)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), not {value}")
    return value


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _print_accuracy(result) -> None:
    for split, value in result.accuracy.items():
        held_out = sum(result.counts["val" if split == "validation" else "test"].values())
        if value is None:
            print(f"{split} accuracy: no {split} photos (the classes are too small to hold some back)")
        else:
            print(f"{split} accuracy: {value:.1%} on {held_out} photos")
    shown = "test" if result.accuracy["test"] is not None else "validation"
    if result.accuracy[shown] is not None:
        from tlhelpers import tables

        print(f"\nConfusion matrix, {shown} photos (rows: true class, columns: predicted class):")
        print(tables.confusion_text(result.confusion[shown], result.classifier.classes))


# tlhelpers.zoo.NAMES, written out so that `--help` needs no torch import (a test keeps them equal).
BACKBONES = ("resnet18", "vgg16", "efficientnet_lite0")


def _quiet(*args, **kwargs) -> None:
    """``print`` for the processes of a torchrun run other than the main one: they say nothing."""


def _resume_hint(args: argparse.Namespace) -> str:
    """The command that continues an interrupted run: the one that ran, with ``--resume``."""
    import shlex

    given = sys.argv[2:] if sys.argv[1:2] == ["train"] else [args.folder, "-o", args.output]
    command = shlex.join(["python", "-m", "tlhelpers", "train", *given])
    return command if "--resume" in given else command + " --resume"


def run_train(args: argparse.Namespace) -> int:
    from tlhelpers import distributed

    context = distributed.start()  # one process, or one of torchrun's
    try:
        return _train(args, context, say=print if context.main else _quiet)
    finally:
        distributed.stop(context)


def _train(args: argparse.Namespace, context, say: Callable[..., None]) -> int:
    from tlhelpers import data, distributed, recipe, zoo

    def refuse(message: str, status: int) -> int:
        if context.main:
            _error(message)
        return status

    if args.backbone is not None and args.backbone not in zoo.NAMES:
        return refuse(f"unknown backbone {args.backbone!r}; choose one of {', '.join(zoo.NAMES)}", 2)
    if args.val + args.test >= 1:
        return refuse(f"--val {args.val} and --test {args.test} leave no photos for training", 2)
    ckpt = Path(args.checkpoint) if args.checkpoint else recipe.default_checkpoint_path(args.output)

    def output_problem() -> str | None:  # asked on the main process, the one that writes
        problem = recipe.writable_output(args.output, overwrite=args.overwrite)
        if problem or Path(ckpt).resolve() == Path(args.output).resolve():
            return problem or f"the checkpoint {ckpt} and MODEL {args.output} must be different files"
        if args.resume:
            return None if ckpt.is_file() else f"cannot resume: there is no checkpoint {ckpt}"
        if ckpt.exists() and not args.overwrite:
            if not recipe.is_checkpoint_file(ckpt):
                return f"{ckpt} exists and was not written by tlhelpers; pass --overwrite to replace it"
            return f"{ckpt} holds an unfinished run: add --resume to continue it, or --overwrite to start again"
        return recipe.writable_output(ckpt, overwrite=True)

    problem = distributed.from_main(output_problem, context)
    if problem:
        return refuse(problem, 2)
    if args.deterministic:
        torch_deterministic()
    progress = not args.no_progress and sys.stderr.isatty() and context.main  # no bars in logs and pipes
    report = data.check(args.folder, progress=progress)
    say(report.summary())
    if not report.usable:
        return refuse(f"{args.folder} cannot be trained on: {'; '.join(report.reasons_not_usable())}.", 1)
    try:
        backbone = recipe.load_backbone(args.backbone)
    except zoo.WeightsUnavailable as error:
        return refuse(str(error), 2)
    say(f"\nBackbone: {backbone.source}")
    if context.distributed:
        batch = args.batch_size or recipe.DEFAULTS[args.fine_tune]["batch_size"]
        say(
            f"{context.world_size} processes ({context.device.type}), {batch // context.world_size} photos each "
            f"per step, {batch} in all"
        )
    try:
        result, outcome = recipe.run(
            args.folder,
            backbone,
            output=args.output,
            checkpoint_path=ckpt,
            resume=args.resume,
            fine_tune=args.fine_tune,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            body_lr=args.body_lr,
            patience=args.patience,
            val=args.val,
            test=args.test,
            seed=args.seed,
            workers=args.workers,
            cache=not args.no_cache,
            context=context,
            report=report,
            progress=progress,
            say=say,
        )
    except recipe.RunRefused as error:
        return refuse(str(error), error.status)
    except recipe.Interrupted as stop:
        if context.main:
            print(
                f"\nInterrupted. {stop.path} holds {stop.epochs_done} of {stop.epochs} epochs; continue with:\n"
                f"  {_resume_hint(args)}",
                file=sys.stderr,
            )
        return 130
    except ValueError as error:
        return refuse(str(error), 1)
    except OSError as error:  # the feature cache or a file cannot be written
        hint = " (try --no-cache)" if args.fine_tune == "head" else ""
        return refuse(f"{error.strerror or error}: {getattr(error, 'filename', '') or ''}{hint}", 2)
    counts = ", ".join(f"{name} {sum(part.values())}" for name, part in result.counts.items())
    say(f"Split (seed {args.seed}): {counts} photos" + (" (features read from the cache)" if result.from_cache else ""))
    if outcome.resumed_from is not None:
        say(f"Resumed after epoch {outcome.resumed_from}.")
    say(
        f"Best epoch: {outcome.best_epoch} of {outcome.epochs}"
        + (
            f" (stopped early: {args.patience} epochs without a better validation score)"
            if outcome.stopped_early
            else ""
        )
    )
    if context.main:
        _print_accuracy(result)
        path = Path(args.output)
        print()
        _report_saved(
            path,
            f"{path.stat().st_size / 1024:.0f} KiB"
            + (", fine-tuned backbone included" if args.fine_tune != "head" else ""),
        )
    return 0


def torch_deterministic() -> None:
    """Deterministic algorithms where PyTorch has them (``train --deterministic``)."""
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


FINE_TUNE_MODES = ("head", "last-block", "all")  # tlhelpers.recipe.MODES, without importing torch for --help


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier on a folder of photos, one subfolder per class (chapter 7)",
        description="Train a classifier on FOLDER (one subfolder per class, named after it): open every photo "
        "and print the same report as check-data; split the usable photos into training, validation and "
        "test photos (stratified, the same for the same --seed); train (--fine-tune head: a linear head on the "
        "frozen backbone's cached features, chapter 4's recipe; last-block or all: the head and the last block "
        "or the whole backbone on augmented photos, chapter 5's recipe), validating after every epoch, keeping "
        "the best epoch and stopping early when --patience epochs bring nothing better; print validation and "
        "test accuracy and a confusion matrix; write the classifier file that 'predict' and 'export' read. "
        "After every epoch a checkpoint (default: MODEL with the suffix .ckpt) is written atomically; "
        "--resume continues an interrupted run from it, Ctrl-C included, and it is removed when MODEL is "
        "written. The same command runs on several processes or machines under torchrun "
        "(torchrun --nproc_per_node=N -m tlhelpers train ...): gloo on CPUs, NCCL on GPUs, the batches "
        "shared out, only the first process writes and prints. Exit status 0 when MODEL was written, 1 when "
        "FOLDER cannot be trained on (fewer than 2 classes, a class without a usable photo), 2 when MODEL or "
        "the checkpoint cannot be written, the backbone is not available or the checkpoint does not belong to "
        "this run, 130 when interrupted. MODEL is written atomically: an interrupted run leaves no partial file.",
    )
    parser.add_argument("folder", metavar="FOLDER", help="dataset folder with one subfolder of photos per class")
    parser.add_argument(
        "-o",
        "--output",
        default="model.pt",
        metavar="MODEL",
        help="classifier file to write (default: model.pt); an existing classifier file is "
        "replaced, any other file only with --overwrite",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace MODEL even when it exists and is not a classifier file, and start afresh "
        "over an unfinished run's checkpoint",
    )
    parser.add_argument(
        "--backbone",
        default=None,
        metavar="NAME",
        help=f"pretrained backbone: {', '.join(BACKBONES)} "
        "(default: resnet18 when its ImageNet weights are available, else the packaged "
        "efficientnet_lite0); a backbone named here is used or the command stops",
    )
    parser.add_argument(
        "--fine-tune",
        choices=FINE_TUNE_MODES,
        default="head",
        help="what trains: head (default; on cached features, quick), last-block (the head and "
        "the backbone's last block, on augmented photos) or all (the whole backbone)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="at most N epochs (default: head 30, or enough for 300 steps; fine-tuning 5)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="photos per optimizer step, over all processes (default: head 64, fine-tuning 32)",
    )
    parser.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        metavar="RATE",
        help="learning rate of the head (default: head 0.001, fine-tuning 0.003, with a warm-up cosine schedule)",
    )
    parser.add_argument(
        "--body-lr",
        type=_positive_float,
        default=None,
        metavar="RATE",
        help="learning rate of the backbone's trained layers when fine-tuning (default: 0.0003)",
    )
    parser.add_argument(
        "--patience",
        type=_non_negative_int,
        default=5,
        metavar="N",
        help="stop after N epochs without a better validation score (default: 5; 0: never)",
    )
    parser.add_argument(
        "--workers",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="DataLoader worker processes that read and prepare photos, kept between epochs "
        "(default: 0, in the training process)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run whose checkpoint is there; refused when it was made "
        "from another folder, other classes, another backbone or other options",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="checkpoint file (default: MODEL with the suffix .ckpt, e.g. model.ckpt)",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="use deterministic algorithms only (slower on GPUs; CPU runs repeat exactly anyway "
        "with the same number of threads)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the split, of the head's initial weights, of the batches and of the augmentation (default: 0)",
    )
    for flag, part in (("--val", "validation"), ("--test", "the test")):
        parser.add_argument(
            flag,
            type=_fraction,
            default=0.15,
            metavar="FRACTION",
            help=f"share of each class held back for {part} (default: 0.15)",
        )
    parser.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the feature cache (see TLHELPERS_CACHE)"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="show no progress bars (they are shown only when stderr is a terminal anyway)",
    )
    parser.set_defaults(handler=run_train)


def _calibration_photos(folder: str, count: int, split: dict | None) -> list:
    """Training photos of ``folder`` for static int8: usable ones only, from the split the model was trained with."""
    from tlhelpers import data, recipe

    split = split or {"seed": 0, "val": 0.15, "test": 0.15}  # files written before the split was stored
    usable = recipe.usable_images(data.check(folder))  # what train used: unreadable photos left out
    images = data.split(usable, val=split["val"], test=split["test"], seed=split["seed"])["train"]
    per_class = max(1, count // len(images.classes))
    fewest = min(images.counts().values())
    if fewest == 0:
        raise ValueError(f"{folder} has a class without training photos")
    return list(data.per_class(images, min(per_class, fewest), seed=0).files)


def run_export(args: argparse.Namespace) -> int:
    from tlhelpers import data, recipe, zoo
    from tlhelpers.heads import Classifier, ClassifierFileError

    try:
        for module in ("onnx", "onnxruntime", "onnxscript"):  # each imported lazily by the export itself
            optional(module)
        from tlhelpers import export
    except ModuleNotFoundError as error:
        _error(f"exporting needs onnx, onnxscript and onnxruntime: {error}")
        return 2
    if args.calibration and not args.int8:
        _error("--calibration is for --int8 (static quantization)")
        return 2
    problem = recipe.writable_output(args.onnx, overwrite=args.overwrite, kind=export.is_exported_file)
    if problem:
        _error(problem)
        return 2
    try:
        classifier = Classifier.load(args.model)
    except (ClassifierFileError, zoo.WeightsUnavailable) as error:
        _error(str(error))
        return 2
    photos = []
    if args.calibration:
        try:
            photos = _calibration_photos(args.calibration, args.calibration_size, classifier.split)
        except (ValueError, recipe.FolderNotUsable, data.DataNotFound) as error:
            _error(f"no calibration photos: {error}")
            return 2
    out = Path(args.onnx)
    print(f"Backbone: {classifier.backbone.source}")
    try:
        if not args.int8:
            export.to_onnx(classifier, out)
        else:
            with tempfile.TemporaryDirectory() as folder:
                fp32 = export.to_onnx(classifier, Path(folder) / "fp32.onnx")
                mode = "static" if photos else "dynamic"
                export.quantize(fp32, out, mode=mode, calibration_photos=photos)
    except export.CalibrationPhotoError as error:
        _error(str(error))
        return 2
    except OSError as error:
        _error(f"cannot write {out}: {error.strerror or error}")
        return 2
    variant = (
        "float32"
        if not args.int8
        else (f"static int8, calibrated on {len(photos)} photos" if photos else "dynamic int8")
    )
    _report_saved(out, f"{variant}, {out.stat().st_size / 1024:.0f} KiB")
    if args.int8 and not photos:
        print("Tip: --calibration FOLDER (training photos) gives static int8, usually faster on CPUs.")
    return 0


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a classifier as an ONNX file that runs without PyTorch, optionally int8 (chapter 7)",
        description="Export MODEL (a classifier file from 'train' or Classifier.save) — backbone and head as "
        "one network in eval mode — to ONNX with PyTorch's exporter, check it with the onnx checker, and "
        "store the class names and preprocessing in the file, so that 'predict OUT PHOTO' (or "
        "tlhelpers.onnx_inference, with onnxruntime, numpy and PIL only) can use it. With --int8 the weights are "
        "stored as 8-bit integers (about 4 times smaller): static quantization when --calibration names a "
        "folder of photos to measure activation ranges on, dynamic quantization otherwise. Exit status 0 when "
        "OUT was written, 2 when MODEL cannot be used or OUT cannot be written. OUT is written atomically.",
    )
    parser.add_argument("model", metavar="MODEL", help="classifier file written by 'train' or Classifier.save")
    parser.add_argument(
        "--onnx",
        required=True,
        metavar="OUT",
        help="ONNX file to write; an existing exported file is replaced, any other file only with --overwrite",
    )
    parser.add_argument("--int8", action="store_true", help="quantize the weights to 8-bit integers")
    parser.add_argument(
        "--calibration",
        metavar="FOLDER",
        default=None,
        help="with --int8: the folder the model was trained on (one subfolder per class); "
        "readable photos from the training part of the split that 'train' made (its --seed, "
        "--val and --test, stored in MODEL) calibrate static quantization; without it --int8 "
        "is dynamic",
    )
    parser.add_argument(
        "--calibration-size",
        type=_positive_int,
        default=64,
        metavar="N",
        help="about how many calibration photos to use, the same number per class (default: 64)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT even when it exists and was not written by 'export'"
    )
    parser.set_defaults(handler=run_export)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_check_data_parser,
    add_predict_parser,
    add_train_parser,
    add_export_parser,
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
