"""``python -m tlhelpers …`` runs the command line of :mod:`tlhelpers.cli`."""

from tlhelpers.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
