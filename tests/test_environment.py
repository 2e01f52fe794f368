"""The three descriptions of the environment agree: pyproject, constraints, environment.yml."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


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
    for extra in ("test", "book"):
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    constraints, conda = _constraints(), _conda_pip_pins()
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in constraints, f"{req.name} is not pinned in constraints.txt"
        assert name in conda, f"{req.name} is missing from environment.yml"
        assert req.specifier.contains(constraints[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={constraints[name]}, outside pyproject's {req.specifier}"
        )


def test_required_pins():
    constraints = _constraints()
    assert constraints["torch"] == "2.14.1"
    assert constraints["torchvision"] == "0.29.1"
    assert constraints["jupyter-book"] == "1.0.4.post1"
    assert constraints["nbval"] == "0.11.0"
