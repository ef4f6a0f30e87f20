"""Adam and AdamW, with PyTorch's single-tensor update rule (same formulas, same operation order)."""
from __future__ import annotations

from typing import Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, check_nonnegative, step_value


class Adam(Optimizer):
    """Adam; weight decay is added to the gradient (L2) unless decoupled_weight_decay (then it is AdamW)."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0,
                 amsgrad: bool = False, *, maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        check_nonnegative(lr=lr, eps=eps)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        check_nonnegative(weight_decay=weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))

    def _update_group(self, group: dict) -> None:
        lr, eps = self.hyper(group, "lr"), self.hyper(group, "eps")
        beta1, beta2 = self.hyper(group, "betas", "beta1", 0), self.hyper(group, "betas", "beta2", 1)
        amsgrad, decoupled = self.flag(group, "amsgrad"), self.flag(group, "decoupled_weight_decay")
        weight_decay = self.hyper(group, "weight_decay") if decoupled and self.flag(group, "weight_decay") else None
        for p, grad in self.gradients(group, weight_decay=not decoupled):
            state = self.lazy_state(p, exp_avg=0, exp_avg_sq=0, **({"max_exp_avg_sq": 0} if amsgrad else {}))
            state["step"].add_(1)
            if weight_decay is not None:
                p.mul_(1 - lr * weight_decay)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_value(state["step"])
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            step_size = lr / bias_correction1
            if amsgrad:
                second_moment = state["max_exp_avg_sq"].maximum_(exp_avg_sq)
            else:
                second_moment = exp_avg_sq
            # (sqrt(v) / sqrt(bias_correction2)) + eps, built in one temporary.
            denom = second_moment.sqrt().div_(bias_correction2_sqrt).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay (the parameter shrinks by lr * weight_decay each step; default 0.01)."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
