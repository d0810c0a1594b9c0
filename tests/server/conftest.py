"""The server tests' fixtures, defined in ``serving``."""

from serving import client, make_service  # noqa: F401
