"""The ``strata`` command line: a thin layer over the library (``strata --help``)."""

from strata.cli.main import app

__all__ = ["app"]
