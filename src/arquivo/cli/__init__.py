"""The ``arquivo`` command line: a thin layer over the library."""

from arquivo.cli.main import app, main

__all__ = ["app", "main"]
