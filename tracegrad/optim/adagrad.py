"""Adagrad, with PyTorch's single-tensor update rule (same formulas, same operation order)."""
from __future__ import annotations

from typing import Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, check_nonnegative, step_value


class Adagrad(Optimizer):
    """Adagrad (lr / (1 + (step - 1) * lr_decay)); as in PyTorch its state exists from construction."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0, eps: float = 1e-10, *,
                 maximize: bool = False) -> None:
        check_nonnegative(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                          initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))
        for group in self.param_groups:
            for p in group["params"]:
                self._accumulator(group, p)

    def _accumulator(self, group: dict, p: Tensor) -> dict:
        return self.lazy_state(p, sum=group["initial_accumulator_value"])

    def _update_group(self, group: dict) -> None:
        lr, lr_decay, eps = self.hyper(group, "lr"), self.hyper(group, "lr_decay"), self.hyper(group, "eps")
        for p, grad in self.gradients(group):
            state = self._accumulator(group, p)
            clr = lr / (1 + (step_value(state["step"].add_(1)) - 1) * lr_decay)
            std = state["sum"].addcmul_(grad, grad, value=1).sqrt().add_(eps)
            p.addcdiv_(grad, std, value=-clr)
