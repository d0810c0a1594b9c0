"""The module classes under the name sentence-transformers gives them: ``from embedkit import models`` ports
``from sentence_transformers import models`` (``models.Transformer``, ``models.Pooling``, ...,
``models.SpladePooling``)."""

from .modules import Dense, Normalize, Pooling, SpladePooling, Transformer

__all__ = ["Dense", "Normalize", "Pooling", "SpladePooling", "Transformer"]
