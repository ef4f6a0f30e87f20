"""The primitive table (see base.py); importing this package registers every primitive."""
from . import elementwise, indexing, movement, reduce  # noqa: F401  (registration)
from .base import REGISTRY, Primitive

__all__ = ["REGISTRY", "Primitive"]
