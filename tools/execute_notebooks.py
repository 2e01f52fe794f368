"""Execute chapters in place and store their outputs and widget state (`make notebooks`).

The stored outputs are what the book shows and what `pytest --nbval` compares
against, so they are produced under the same pinned conditions as the test suite:
the packaged fallback weights, no downloads, and hidden checks that raise.

    python tools/execute_notebooks.py notebooks/01_pretrained_inference.ipynb ...
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ as a script's siblings
from patient_kernel import patient_kernel_manager  # noqa: E402


def execute(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=1800,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,  # widgets render in the static HTML book
        kernel_manager_class=patient_kernel_manager(),  # no cell waits out its timeout
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError:
        failed = path.with_suffix(".failed.ipynb")
        nbformat.write(notebook, failed)
        print(f"{path}: a cell failed; the partly executed notebook is in {failed}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - start
    nbformat.write(notebook, path)
    return seconds


def main(paths: list[str]) -> int:
    os.environ["TLHELPERS_FORCE_FALLBACK"] = "1"
    os.environ["TLHELPERS_OFFLINE"] = "1"
    os.environ["TLHELPERS_STRICT_CHECKS"] = "1"  # every claim of the text must hold here
    for name in paths:
        seconds = execute(Path(name))
        print(f"{name}: executed in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
