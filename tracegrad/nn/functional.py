"""Functional forms of layers and losses, composed from tracegrad ops (so they differentiate and trace)."""
from __future__ import annotations

import math

from .. import ops
from ..creation import rand_like
from ..tensor import Tensor

softmax = ops.softmax
log_softmax = ops.log_softmax
relu = ops.relu
sigmoid = ops.sigmoid
tanh = ops.tanh


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU: x * Phi(x), exactly (erf) or with the tanh approximation."""
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1.0 + inner.tanh())
    if approximate != "none":
        raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return 0.5 * input * (1.0 + (input * (1.0 / math.sqrt(2.0))).erf())


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else negative_slope * x."""
    return ops.where(input > 0, input, input * negative_slope)


def silu(input: Tensor) -> Tensor:
    """x * sigmoid(x)."""
    return input * input.sigmoid()


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, linear above the threshold."""
    scaled = input * beta
    return ops.where(scaled > threshold, input, (ops.minimum(scaled, threshold).exp().log1p()) / beta)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias."""
    out = input @ weight.t()
    return out + bias if bias is not None else out


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when not training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = (rand_like(input) >= p).to(input.dtype)
    return input * keep * (1.0 / (1.0 - p))


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize over the last len(normalized_shape) dims, then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[-len(shape):]) != shape:
        raise RuntimeError(f"Given normalized_shape={list(shape)}, expected input with shape [*, "
                           f"{', '.join(map(str, shape))}], but got input of size {list(input.shape)}")
    dims = tuple(range(-len(shape), 0))
    mean = input.mean(dims, keepdim=True)
    centered = input - mean
    var = (centered * centered).mean(dims, keepdim=True)
    out = centered * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of weight picked by the integer indices in input."""
    if input.dtype.is_floating_point:
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           "Long, Int; but got a floating tensor instead (while checking arguments for embedding)")
    return weight[input]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error."""
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error."""
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Huber-like loss: quadratic below beta, linear above."""
    diff = (input - target).abs()
    return _reduce(ops.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta), reduction)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices given log-probabilities (classes in dim 1)."""
    if target.dtype.is_floating_point:
        raise RuntimeError("expected scalar type Long but found Float")
    if input.ndim == 1:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    if input.shape[0] != target.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0]}).")
    if weight is None and not bool((target == ignore_index).any()):
        # The common case, in few ops. (bool() of a tensor is a guard when the step is compiled.)
        return _reduce(-input.gather(1, target.unsqueeze(1)).squeeze(1), reduction)
    valid = target != ignore_index
    safe_target = ops.where(valid, target, 0)
    picked = -input.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    w = valid.to(input.dtype) if weight is None else weight[safe_target] * valid.to(input.dtype)
    loss = picked * w
    if reduction == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over dim 1 followed by nll_loss (class indices) or by soft-target cross entropy."""
    logp = input.log_softmax(1 if input.ndim > 1 else 0)
    if target.dtype.is_floating_point:  # class probabilities
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / input.shape[1 if input.ndim > 1 else 0]
        per = logp * target if weight is None else logp * target * _class_view(weight, logp)
        return _reduce(-per.sum(1 if input.ndim > 1 else 0), reduction)
    loss = nll_loss(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return loss
    classes = input.shape[1 if input.ndim > 1 else 0]
    smooth = -(logp if weight is None else logp * _class_view(weight, logp)).sum(1 if input.ndim > 1 else 0)
    valid = (target != ignore_index).to(input.dtype)
    smooth = smooth * valid
    if reduction == "mean":
        denom = valid.sum() if weight is None else (weight[ops.where(target != ignore_index, target, 0)] * valid).sum()
        smooth = smooth.sum() / denom
    else:
        smooth = _reduce(smooth, reduction)
    return (1 - label_smoothing) * loss + label_smoothing / classes * smooth


def _class_view(weight: Tensor, like: Tensor) -> Tensor:
    """A per-class weight shaped to broadcast over dim 1."""
    return weight.reshape((1, -1) + (1,) * (like.ndim - 2)) if like.ndim > 1 else weight


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)), with logs clamped at -100 like PyTorch."""
    loss = -(target * input.log().clamp(min=-100) + (1 - target) * (1 - input).log().clamp(min=-100))
    return _reduce(loss * weight if weight is not None else loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross entropy on logits, computed stably."""
    log_sig = -softplus(-input)          # log(sigmoid(x))
    log_one_minus = -softplus(input)     # log(1 - sigmoid(x))
    pos = target * log_sig * (pos_weight if pos_weight is not None else 1)
    loss = -(pos + (1 - target) * log_one_minus)
    return _reduce(loss * weight if weight is not None else loss, reduction)
