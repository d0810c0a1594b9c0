"""The ``embedkit`` command: ``main`` parses, ``commands`` runs the store commands, ``readers`` reads input files."""

from integrations.cli.main import main

__all__ = ["main"]
