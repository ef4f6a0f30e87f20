"""RMSprop, with PyTorch's single-tensor update rule (same formulas, same operation order)."""
from __future__ import annotations

from typing import Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, check_nonnegative


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square (centered: minus the mean's square)."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 maximize: bool = False) -> None:
        check_nonnegative(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, maximize=maximize))

    def _update_group(self, group: dict) -> None:
        lr, alpha, eps = self.hyper(group, "lr"), self.hyper(group, "alpha"), self.hyper(group, "eps")
        centered, use_momentum = self.flag(group, "centered"), self.flag(group, "momentum")
        momentum = self.hyper(group, "momentum") if use_momentum else None
        for p, grad in self.gradients(group):
            state = self.lazy_state(p, square_avg=0, **({"momentum_buffer": 0} if use_momentum else {}),
                                    **({"grad_avg": 0} if centered else {}))
            state["step"].add_(1)
            square_avg = state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            if centered:
                grad_avg = state["grad_avg"].lerp_(grad, 1 - alpha)
                avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
            else:
                avg = square_avg.sqrt()
            avg = avg.add_(eps)
            if use_momentum:
                p.add_(state["momentum_buffer"].mul_(momentum).addcdiv_(grad, avg), alpha=-lr)
            else:
                p.addcdiv_(grad, avg, value=-lr)
