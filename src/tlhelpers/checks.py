"""The book's claims, checked where they are made (every chapter's hidden cells).

Each number or statement in a chapter's prose is checked by a hidden cell
that calls :func:`expect`.  What happens when a claim does not hold depends on
where the chapter runs:

* in the regression suite (``TLHELPERS_STRICT_CHECKS=1``, set by the pytest
  configuration together with the fallback weights that produced the stored
  outputs) it raises :class:`ClaimNotMet`, so the suite fails as soon as the
  book's text stops being true;
* anywhere else (other weights such as the real ResNet-18 on Colab, another
  budget, your own photos) it prints one line saying what the book saw and
  what this run saw, and the notebook goes on.
"""

from __future__ import annotations

from tlhelpers import runtime

NOTE_PREFIX = "Not as in the book:"


class ClaimNotMet(AssertionError):
    """A claim of the book's text does not hold in the configuration that produced it."""


def strict() -> bool:
    """True when a claim that does not hold must fail the run (the regression suite)."""
    return runtime.flag(runtime.STRICT_ENV)


def expect(holds, claim: str, book: str, seen: str) -> None:
    """Check one claim of the text.

    ``claim`` says what the text states, ``book`` what the book's own run
    measured, ``seen`` what this run measured, e.g.::

        checks.expect(acc >= 0.95, "the new head reaches at least 95% on the test photos",
                      book="99.1%", seen=f"{acc:.1%}")

    It returns nothing, so a hidden cell that ends with it has no output.
    """
    if bool(holds):
        return
    if strict():
        raise ClaimNotMet(f"{claim}: the book saw {book}, this run saw {seen}")
    print(f"{NOTE_PREFIX} {claim} (the book saw {book}; this run saw {seen}).")
