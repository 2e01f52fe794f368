"""Fetch the JavaScript that renders ipywidgets in the static HTML book (`make book` runs it).

The chapters are stored with their widget state; a browser turns that state back
into controls with ``@jupyter-widgets/html-manager``.  myst-nb would load it (and
require.js) from public CDNs, which a reader offline — or this project's build
machines — cannot reach.  Instead this script takes the package from the npm
registry at build time, checks it against the pinned integrity hash, and unpacks
its self-contained bundle ``dist/embed.js`` (no require.js needed; it renders the
standard ipywidgets controls, which is all the chapters use) with the fonts it
loads into ``.widget-js/static/html-manager/``.  ``_config.yml`` lists that folder
in ``html_static_path`` and points ``nb_ipywidgets_js`` at the bundle, so the
pages load ``_static/html-manager/embed.js`` from the book itself.

Third-party JavaScript is never committed: ``.widget-js/`` is in ``.gitignore``.

    python tools/fetch_widget_js.py            # fetch unless already there
    python tools/fetch_widget_js.py --force    # fetch again
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE = "@jupyter-widgets/html-manager"
VERSION = "1.0.15"  # the 1.x line is the one for ipywidgets 8 (ipywidgets asks for ^1.0.1)
INTEGRITY = "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/html-manager-{VERSION}.tgz"

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / ".widget-js" / "static"  # listed in html_static_path (_config.yml)
DEST = STATIC / "html-manager"  # -> _build/html/_static/html-manager/
BUNDLE = DEST / "embed.js"  # nb_ipywidgets_js in _config.yml; the Makefile's target
STAMP = ROOT / ".widget-js" / "html-manager.version"

# From the package's dist/: the bundle, its licence notice and the font files it loads.
# Not the AMD builds (they need require.js) nor the 6 MB source map.
SKIP = {"embed-amd.js", "libembed-amd.js", "embed.js.map"}


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _download_with_npm(workdir: Path) -> bytes | None:
    """The tarball through npm's own client (its registry, proxy and cache settings)."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    result = subprocess.run(
        [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(workdir), "--silent"],
        cwd=workdir, capture_output=True, text=True,
    )
    tarballs = list(workdir.glob("*.tgz"))
    if result.returncode != 0 or len(tarballs) != 1:
        print(f"npm pack failed ({result.returncode}): {result.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return tarballs[0].read_bytes()


def _download_direct() -> bytes:
    """The same tarball straight from the npm registry, for machines without npm."""
    with urllib.request.urlopen(TARBALL_URL, timeout=120) as response:
        return response.read()


def fetch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = _download_with_npm(Path(tmp))
        if data is None:
            print(f"fetching {TARBALL_URL} (npm not available or failed)")
            data = _download_direct()
    if _integrity(data) != INTEGRITY:
        raise SystemExit(f"{PACKAGE}@{VERSION}: integrity check failed, got {_integrity(data)}")

    staging = DEST.with_name(DEST.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if (len(parts) != 3 or parts[:2] != ("package", "dist") or not member.isfile()
                    or parts[2] in SKIP):
                continue
            source = tar.extractfile(member)
            assert source is not None
            (staging / parts[2]).write_bytes(source.read())
    if not (staging / "embed.js").is_file():
        raise SystemExit(f"{PACKAGE}@{VERSION}: no dist/embed.js in the package")
    shutil.rmtree(DEST, ignore_errors=True)
    staging.rename(DEST)
    # npm tarballs carry a fixed 1985 timestamp; make's target must look fresh.
    os.utime(BUNDLE)
    STAMP.write_text(f"{PACKAGE}@{VERSION} {INTEGRITY}\n")
    count = sum(1 for _ in DEST.iterdir())
    print(f"{PACKAGE}@{VERSION}: {count} files in {DEST.relative_to(ROOT)}")


def is_current() -> bool:
    return BUNDLE.is_file() and STAMP.is_file() and STAMP.read_text().split()[:1] == [f"{PACKAGE}@{VERSION}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch even when the files are there")
    args = parser.parse_args(argv)
    if args.force or not is_current():
        fetch()
    else:
        os.utime(BUNDLE)
        print(f"{PACKAGE}@{VERSION}: already in {DEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
