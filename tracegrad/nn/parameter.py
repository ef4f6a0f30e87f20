"""Parameter: a leaf tensor that modules register as trainable."""
from __future__ import annotations

from ..tensor import Tensor, _alias


class Parameter(Tensor):
    """A tensor that is a module parameter (requires_grad=True by default); shares data with its source."""

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        from ..creation import zeros
        if data is None:
            data = zeros(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a Tensor, got {type(data).__name__}")
        param = cls._make(data._data)
        param._vc = data._vc
        _alias(param, data)
        if requires_grad:
            param.requires_grad_(True)
        return param

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        pass

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
