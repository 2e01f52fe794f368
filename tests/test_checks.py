"""tlhelpers.checks: a claim that fails stops the regression suite, and only prints elsewhere."""

import pytest

from tlhelpers import checks, runtime


def test_a_claim_that_holds_is_silent_everywhere(monkeypatch, capsys):
    for strict in ("1", ""):
        monkeypatch.setenv(runtime.STRICT_ENV, strict)
        checks.expect(0.99 >= 0.95, "accuracy ≥ 95%", book="99.1%", seen="99.0%")
    assert capsys.readouterr().out == ""


def test_a_failed_claim_raises_in_the_regression_suite(monkeypatch):
    monkeypatch.setenv(runtime.STRICT_ENV, "1")
    with pytest.raises(checks.ClaimNotMet, match=r"accuracy ≥ 95%: the book saw 99.1%, this run saw 80.0%"):
        checks.expect(False, "accuracy ≥ 95%", book="99.1%", seen="80.0%")


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_a_failed_claim_prints_one_line_elsewhere(monkeypatch, capsys, value):
    monkeypatch.setenv(runtime.STRICT_ENV, value)
    checks.expect(False, "accuracy ≥ 95%", book="99.1%", seen="80.0%")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(checks.NOTE_PREFIX)
    assert "99.1%" in out and "80.0%" in out


def test_strict_is_off_without_the_variable(monkeypatch):
    monkeypatch.delenv(runtime.STRICT_ENV, raising=False)
    assert not checks.strict()
