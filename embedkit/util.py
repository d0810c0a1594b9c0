"""The helpers that ``sentence_transformers.util`` users reach for, under the same names."""


from . import UTIL_NAMES

__all__ = UTIL_NAMES
