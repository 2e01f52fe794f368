"""The repository's address lives in _config.yml; every copy elsewhere agrees with it.

The Colab launch buttons are built from ``repository.url`` in _config.yml. A
notebook opened on Colab cannot read that file, so its first code cell repeats
the address to install ``tlhelpers`` from git; README links repeat it too. These
tests fail as soon as one of them disagrees, so moving the repository means
editing _config.yml and fixing whatever the failures name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Where this project's own address shows up: pip installs from git, Colab links.
GIT_INSTALL = re.compile(r"git\+(https://github\.com/[\w.\-]+/[\w.\-]+?)(?:\.git)?(?=[@\"'\s#]|$)")
COLAB_LINK = re.compile(r"colab\.research\.google\.com/github/([\w.\-]+/[\w.\-]+)/blob/([\w.\-]+)/")
# Files a reader or maintainer sees, besides _config.yml itself.
TEXT_GLOBS = (
    "README.md",
    "book/**/*.md",
    "pyproject.toml",
    "environment.yml",
    "Makefile",
    "src/**/*.py",
    "tools/**/*.py",
    "notebooks/*.ipynb",
)


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _repo_url() -> str:
    return _config()["repository"]["url"].rstrip("/")


def _first_code_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    source = code[0]["source"]
    return "".join(source) if isinstance(source, list) else source


def test_config_holds_the_repository():
    config = _config()
    url = config["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.\-]+/[\w.\-]+", url), url
    assert config["repository"].get("branch"), "repository.branch: the Colab links need it"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


def test_repository_is_defined_once():
    """No second Sphinx/Jupyter Book configuration could override the address."""
    candidates = (ROOT / "conf.py", ROOT / "book" / "_config.yml", ROOT / "book" / "conf.py")
    others = [p.name for p in candidates if p.exists()]
    assert not others, f"a second configuration holds book settings: {others}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_setup_cell_installs_from_the_configured_repository(notebook):
    source = _first_code_cell(notebook)
    assert "tlhelpers" in source and "find_spec" in source, (
        f"{notebook.name}: the first code cell should install tlhelpers when it is missing, got:\n{source}"
    )
    urls = GIT_INSTALL.findall(source)
    assert urls, f"{notebook.name}: the first code cell installs nothing from git+…:\n{source}"
    assert set(urls) == {_repo_url()}, (
        f"{notebook.name} installs from {urls}, but _config.yml's repository.url is {_repo_url()}"
    )


def test_every_copy_of_the_address_agrees():
    url, branch = _repo_url(), _config()["repository"]["branch"]
    owner_name = url.removeprefix("https://github.com/")
    wrong = []
    for pattern in TEXT_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            text = path.read_text(errors="replace")
            if path.suffix == ".ipynb":  # sources only: outputs may quote anything
                text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
            relative = path.relative_to(ROOT)
            wrong += [f"{relative}: git+{found}" for found in GIT_INSTALL.findall(text) if found != url]
            wrong += [
                f"{relative}: Colab link to {repo} on {ref}"
                for repo, ref in COLAB_LINK.findall(text)
                if (repo, ref) != (owner_name, branch)
            ]
    assert not wrong, f"_config.yml says {url} (branch {branch}), but:\n" + "\n".join(wrong)


def _project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.MULTILINE).group(1)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_setup_cell_pins_the_book_version(notebook):
    """Colab installs the helpers the chapter was executed with (tag v<version>), not a moving branch."""
    source = _first_code_cell(notebook)
    refs = re.findall(r"git\+https://github\.com/[\w.\-]+/[\w.\-]+?(?:\.git)?@([\w.\-]+)", source)
    assert refs == [f"v{_project_version()}"], (
        f"{notebook.name}: the setup cell should install tag v{_project_version()} (pyproject's version), "
        f"found {refs or 'no pinned ref'}"
    )
    assert "--upgrade" not in source and "-U " not in source, "the setup cell must not upgrade Colab's packages"


def test_package_version_is_the_project_version():
    import tlhelpers

    assert tlhelpers.__version__ == _project_version()
