"""Fetch the third-party JavaScript the HTML book needs, from the npm registry (`make book` runs it).

By default the book's pages would load two things from public CDNs, which a reader
offline — and this project's build machines — cannot reach (a third, the in-page
model runtime, has no CDN-free default at all):

- the widgets: chapters are stored with their widget state, and
  ``@jupyter-widgets/html-manager`` turns that state back into controls (myst-nb
  would load it, and require.js, from cdnjs/jsdelivr);
- the formulas: Sphinx loads MathJax from jsdelivr on pages with math;
- the in-page models: ``onnxruntime-web`` runs the chapters' ONNX files in the
  page (WebAssembly, one thread).  A page opened from disk (``file://``) may not
  ``fetch()`` a file, nor import an ES module, so the runtime is repacked into
  one classic script, ``onnxruntime-web/ort-runtime.js``, that holds the
  WebAssembly binary (gzip, base64) and the module glue as text; the page's own
  ``book/live/live.js`` hands both to onnxruntime-web (``env.wasm.wasmBinary``
  and a ``blob:`` URL for the glue).  The 15 MB binary is then a 5 MB script,
  loaded once per visit and shared by every page.

This script takes both packages from the npm registry at build time (through
``npm pack`` when npm is installed, else straight from the registry), checks each
tarball against its pinned integrity hash, and unpacks only the files the pages
use into ``.widget-js/static/`` (ignored by git: third-party JavaScript is never
committed).  ``_config.yml`` lists that folder in ``html_static_path`` and points
``nb_ipywidgets_js`` and ``mathjax_path`` at the files, so the pages load them
from the book itself (``_static/html-manager/``, ``_static/mathjax/``).

html-manager's ``dist/embed.js`` is its self-contained bundle: no require.js, and
it renders the standard ipywidgets controls, which is all the chapters use.

    python tools/fetch_book_js.py            # fetch what is missing or out of date
    python tools/fetch_book_js.py --force    # fetch everything again
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / ".widget-js" / "static"  # in html_static_path (_config.yml); copied to _build/html/_static/
STAMP = ROOT / ".widget-js" / "fetched.txt"  # what is there; the Makefile's target


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # npm's dist.integrity of the tarball
    folder: str  # under .widget-js/static/
    strip: str  # the tarball folder whose contents go into `folder`
    keep: tuple[str, ...]  # glob patterns, relative to `strip`

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball_url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = (
    # The 1.x line is the one for ipywidgets 8 (ipywidgets 8.1 asks for ^1.0.1).
    # The bundle, its licence notice and the icon fonts it loads; not the AMD
    # builds (they need require.js) nor the 6 MB source map.
    Package(
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        folder="html-manager",
        strip="package/dist",
        keep=("embed.js", "embed.js.LICENSE.txt", "*.woff", "*.woff2", "*.ttf", "*.eot", "*.svg"),
    ),
    # MathJax 3, the version Sphinx 7 loads by default (tex-mml-chtml.js), with the
    # pieces it loads on demand: fonts, TeX extensions, the menu, accessibility.
    # The WebAssembly build of ONNX Runtime (its UMD script, the glue module and the
    # binary); the glue and binary are repacked for file:// pages (see pack_ort()).
    Package(
        "onnxruntime-web",
        "1.31.1",
        "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw==",
        folder="onnxruntime-web",
        strip="package",
        keep=(
            "dist/ort.wasm.min.js",
            "dist/ort-wasm-simd-threaded.mjs",
            "dist/ort-wasm-simd-threaded.wasm",
            "README.md",
        ),
    ),
    Package(
        "mathjax",
        "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        folder="mathjax",
        strip="package/es5",
        keep=(
            "tex-mml-chtml.js",
            "output/chtml/fonts/woff-v2/*",
            "input/tex/extensions/*",
            "input/mml/*",
            "ui/*",
            "a11y/*",
            "adaptors/*",
        ),
    ),
)


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _download(package: Package) -> bytes:
    npm = shutil.which("npm")
    if npm is not None:  # npm's own client: its registry, proxy and cache settings
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run(
                [npm, "pack", package.spec, "--pack-destination", tmp, "--silent"],
                cwd=tmp,
                capture_output=True,
                text=True,
            )
            tarballs = list(Path(tmp).glob("*.tgz"))
            if result.returncode == 0 and len(tarballs) == 1:
                return tarballs[0].read_bytes()
            print(
                f"npm pack {package.spec} failed ({result.returncode}): {result.stderr.strip()[-300:]}", file=sys.stderr
            )
    print(f"fetching {package.tarball_url}")
    with urllib.request.urlopen(package.tarball_url, timeout=120) as response:
        return response.read()


def fetch(package: Package) -> int:
    """Download, verify and unpack one package; the number of files written."""
    data = _download(package)
    if _integrity(data) != package.integrity:
        raise SystemExit(f"{package.spec}: integrity check failed (got {_integrity(data)})")
    dest = STATIC / package.folder
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(package.strip + "/"):
                continue
            relative = member.name[len(package.strip) + 1 :]
            if ".." in Path(relative).parts or not any(fnmatch.fnmatch(relative, p) for p in package.keep):
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            count += 1
    for pattern in package.keep:
        if "*" not in pattern and not (staging / pattern).is_file():
            raise SystemExit(f"{package.spec}: {package.strip}/{pattern} is missing from the package")
    if package.name == "onnxruntime-web":
        pack_ort(staging)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return count


ORT_RUNTIME = "ort-runtime.js"


def pack_ort(folder: Path) -> Path:
    """Repack onnxruntime-web's WebAssembly binary and glue module into one classic script.

    ``ort-runtime.js`` sets ``globalThis.tlbookOrtRuntime = {wasmGzipBase64, glue}``;
    the raw ``.wasm`` and ``.mjs`` are then removed, so that the book does not
    ship them twice.  gzip with a zero timestamp keeps the build deterministic.
    """
    import gzip
    import json

    dist = folder / "dist"
    wasm = dist / "ort-wasm-simd-threaded.wasm"
    glue = dist / "ort-wasm-simd-threaded.mjs"
    packed = base64.b64encode(gzip.compress(wasm.read_bytes(), compresslevel=9, mtime=0)).decode()
    target = dist / ORT_RUNTIME
    target.write_text(
        "// onnxruntime-web's WebAssembly binary (gzip, base64) and its glue module, repacked\n"
        "// by tools/fetch_book_js.py so that pages opened from disk (file://) can run it.\n"
        f"globalThis.tlbookOrtRuntime = {{wasmGzipBase64: {json.dumps(packed)},\n"
        f"  glue: {json.dumps(glue.read_text())}}};\n"
    )
    wasm.unlink()
    glue.unlink()
    return target


def _fetched() -> dict[str, str]:
    if not STAMP.is_file():
        return {}
    return dict(line.split(maxsplit=1) for line in STAMP.read_text().splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch even what is there already")
    args = parser.parse_args(argv)
    fetched = _fetched()
    for package in PACKAGES:
        if not args.force and fetched.get(package.spec) == package.integrity and (STATIC / package.folder).is_dir():
            print(f"{package.spec}: already in {(STATIC / package.folder).relative_to(ROOT)}")
            continue
        count = fetch(package)
        fetched = {k: v for k, v in fetched.items() if not k.startswith(package.name + "@")}
        fetched[package.spec] = package.integrity
        print(f"{package.spec}: {count} files in {(STATIC / package.folder).relative_to(ROOT)}")
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    # Rewritten every time, so that make sees the target as newer than this script.
    STAMP.write_text("".join(f"{spec} {integrity}\n" for spec, integrity in sorted(fetched.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
