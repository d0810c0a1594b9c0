"""Pieces both stores share; private to ``integrations``."""
