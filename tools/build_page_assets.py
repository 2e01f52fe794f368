"""Build the models and data that the book's pages run in the browser (`make book` runs it).

    python tools/build_page_assets.py            # into .page-assets/build/
    python tools/build_page_assets.py --force    # build again even when up to date

What is built, and why it travels as scripts, is explained in
``tlhelpers.pages``.  The folder is ignored by git; its ``static/``
is listed in ``html_static_path`` (``_config.yml``), so the pages load the
assets from the book itself (``_static/page-assets/``).  A stamp records the package version, the
photos and the libraries it was built from; nothing is rebuilt while they stay
the same.  The book's pages show what the regression suite stores, so the
backbone is pinned like there: the packaged fallback.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".page-assets" / "build"  # static/page-assets/ for the pages, raw/ for Python
STAMP = ROOT / ".page-assets" / "built.txt"
RUNTIME = ROOT / ".widget-js" / "static" / "onnxruntime-web" / "dist"  # tools/fetch_book_js.py


def fingerprint() -> str:
    """What the assets depend on: the package's source, the photo list, the libraries."""
    import onnxruntime
    import torch

    from tlhelpers import data

    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "tlhelpers").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    images = data.scan(data.locate())
    for path in images.files:
        digest.update(str(path.relative_to(images.root)).encode())
    digest.update(f"{torch.__version__} {onnxruntime.__version__}".encode())
    for path in sorted(RUNTIME.glob("*.js")):
        digest.update(f"{path.name} {path.stat().st_size}".encode())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build even when the stamp says up to date")
    args = parser.parse_args(argv)
    os.environ.setdefault("TLHELPERS_FORCE_FALLBACK", "1")
    from tlhelpers import data, pages

    try:
        stamp = fingerprint()
    except data.DataNotFound as error:
        print(f"Cannot build the pages' models: {error}", file=sys.stderr)
        return 1
    built = (OUT / "static" / "page-assets" / "manifest.js").is_file()
    if not args.force and built and STAMP.is_file() and STAMP.read_text().strip() == stamp:
        print(f"page assets up to date in {OUT.relative_to(ROOT)}")
        return 0
    start = time.perf_counter()
    runtime_bytes = sum(path.stat().st_size for path in RUNTIME.glob("*.js"))
    manifest = pages.build(OUT, runtime_bytes=runtime_bytes)
    STAMP.write_text(stamp + "\n")
    for task, entry in manifest["tasks"].items():
        print(f"  {task:12s} {pages.megabytes(entry['bytes']):>8s}  ({', '.join(entry['assets'])})")
    for name, check in manifest["checks"].items():
        print(
            f"  {name}: same top class {check['same top class']:.0%}, "
            f"largest probability gap {check['largest probability gap']:.4f}"
        )
    print(f"page assets built in {OUT.relative_to(ROOT)} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
