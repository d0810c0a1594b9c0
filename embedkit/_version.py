"""The one version of the distribution (pyproject.toml reads it)."""

__version__ = "0.1.0"
