"""Functional forms of layers and losses.

Everything here is composed from tracegrad tensor ops, never from NumPy arrays or hand-written backward
code, so each function gets gradients (of any order) and compiles like any other op sequence. The
compositions favour few ops, because each op costs Python overhead in eager mode.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import dtypes, ops
from ..autograd.engine import name_node
from ..autograd.grad_mode import no_grad
from ..creation import arange, empty_like
from ..tensor import TRACE, Tensor, _legacy_kind
from .windows import adaptive_avg_pool2d, avg_pool2d, conv1d, conv2d, max_pool2d  # noqa: F401 (re-exported)

sigmoid = ops.sigmoid
tanh = ops.tanh

_REDUCTIONS = ("none", "mean", "sum")


# ---- activations ----------------------------------------------------------------------------------


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0), elementwise."""
    return input.relu_() if inplace else ops.relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x where x > 0, else negative_slope * x."""
    out = ops.where(input > 0, input, input * negative_slope)
    return input.copy_(out) if inplace else out


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x)."""
    out = input * input.sigmoid()
    return input.copy_(out) if inplace else out


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, else alpha * (exp(x) - 1)."""
    positive = input > 0
    # exp of the positive inputs is never needed: where() keeps it from overflowing (and its gradient from NaN).
    out = ops.where(positive, input, ops.where(positive, 0.0, input).expm1() * alpha)
    return input.copy_(out) if inplace else out


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x): exactly with erf ('none'), or with the tanh approximation ('tanh')."""
    if approximate == "none":
        return input * 0.5 * ((input * (1.0 / math.sqrt(2.0))).erf() + 1.0)
    if approximate == "tanh":
        inner = (input * input * 0.044715 + 1.0) * input * math.sqrt(2.0 / math.pi)
        return input * 0.5 * (inner.tanh() + 1.0)
    raise RuntimeError(f"approximate argument must be either none or tanh, got {approximate!r}")


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta; linear where beta * x > threshold."""
    scaled = input if beta == 1 else input * beta
    # The minimum keeps exp from overflowing in the branch that where() discards.
    soft = ops.minimum(scaled, threshold).exp().log1p()
    return ops.where(scaled > threshold, input, soft if beta == 1 else soft / beta)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)), computed without overflow."""
    return -softplus(-input)


def _softmax_dim(dim: int | None, ndim: int, name: str) -> int:
    """dim, or the legacy implicit choice (with PyTorch's deprecation warning) when it is None."""
    if dim is not None:
        return dim
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X "
                  f"as an argument.", stacklevel=4)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """exp(x) normalized to sum to 1 over dim."""
    return ops.softmax(input, _softmax_dim(dim, input.ndim, "softmax"), dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """log(softmax(x)) over dim, computed stably (x - logsumexp(x))."""
    return ops.log_softmax(input, _softmax_dim(dim, input.ndim, "log_softmax"), dtype=dtype)


# ---- layers -------------------------------------------------------------------------------------


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias."""
    out = input @ weight.t()
    if bias is None:
        return out
    return name_node(out + bias, "AddmmBackward0") if input.ndim == 2 else out + bias  # PyTorch's fused node


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input.mul_(0.0) if inplace else input * 0.0
    # The mask is built in place on a fresh tensor, so only the final multiplication is recorded.
    mask = empty_like(input).bernoulli_(1.0 - p).div_(1.0 - p)
    return input.mul_(mask) if inplace else input * mask


def _standardize(input: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(input - mean) / sqrt(var + eps) over dims, with the mean and the biased variance (kept dims)."""
    mean = input.mean(dims, keepdim=True)
    centered = input - mean
    variance = (centered * centered).mean(dims, keepdim=True)
    return centered * (variance + eps).rsqrt(), mean, variance


def _affine(out: Tensor, weight: Tensor | None, bias: Tensor | None, shape: tuple[int, ...] | None = None) -> Tensor:
    """out * weight + bias (each optional), weight and bias reshaped to shape first when given."""
    if weight is not None:
        out = out * (weight if shape is None else weight.reshape(shape))
    if bias is not None:
        out = out + (bias if shape is None else bias.reshape(shape))
    return out


def _channel_shape(input: Tensor) -> tuple[int, ...]:
    """The shape that broadcasts a per-channel vector along dim 1 of input: (1, C, 1, ...)."""
    return (1, input.shape[1]) + (1,) * (input.ndim - 2)


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize over the last len(normalized_shape) dims (biased variance), then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape):]) != shape or len(shape) > input.ndim:
        raise RuntimeError(f"Given normalized_shape={list(shape)}, expected input with shape [*, "
                           f"{', '.join(map(str, shape))}], but got input of size{list(input.shape)}")
    out, _, _ = _standardize(input, tuple(range(-len(shape), 0)), eps)
    return _affine(out, weight, bias)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float | Tensor = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) over the batch and every other dim, then scale and shift per channel.

    Training uses the batch's mean and biased variance and, when running statistics are given, updates
    them in place: running = (1 - momentum) * running + momentum * batch (the variance unbiased). Otherwise
    the running statistics normalize. momentum may be a 0-d tensor (BatchNorm's cumulative average).
    """
    if input.ndim < 2:
        raise RuntimeError(f"batch_norm expects an input of shape (N, C, *), got input of size {list(input.shape)}")
    channels = input.shape[1]
    for name, tensor in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                         ("bias", bias)):
        if tensor is not None and tensor.numel() != channels:
            raise RuntimeError(f"{name} should contain {channels} elements not {tensor.numel()}")
    shape = _channel_shape(input)
    if not training:
        if running_mean is None or running_var is None:
            raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
        out = (input - running_mean.reshape(shape)) * (running_var.reshape(shape) + eps).rsqrt()
        return _affine(out, weight, bias, shape)
    count = input.numel() // channels
    if count <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.shape}")
    out, mean, variance = _standardize(input, (0,) + tuple(range(2, input.ndim)), eps)
    with no_grad():
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.reshape(-1) * momentum)
        if running_var is not None:
            running_var.mul_(1 - momentum).add_(variance.reshape(-1) * (momentum * count / (count - 1)))
    return _affine(out, weight, bias, shape)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize each sample over groups of num_groups consecutive channels (dim 1), then scale and shift."""
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.ndim}")
    if input.shape[1] % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input of "
                           f"shape {list(input.shape)} and num_groups={num_groups}")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and (tensor.ndim != 1 or tensor.numel() != input.shape[1]):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels in input, "
                               f"but got {name} of shape {list(tensor.shape)} and input of shape {list(input.shape)}")
    grouped = input.reshape(input.shape[0], num_groups, -1)
    out, _, _ = _standardize(grouped, (-1,), eps)
    return _affine(out.reshape(input.shape), weight, bias, _channel_shape(input))


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of weight picked by the integer indices in input; the padding_idx row gets no gradient."""
    if input.is_floating_point():
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           "Long, Int; but got a floating tensor instead (while checking arguments for embedding)")
    out = weight[input]
    if padding_idx is None:
        return out
    if padding_idx < 0:
        padding_idx += weight.shape[0]
    # Same values, but the padding positions come from a detached copy, so no gradient reaches that row.
    return ops.where((input == padding_idx).unsqueeze(-1), out.detach(), out)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding of class indices, in a new last dim of size num_classes (max + 1 if -1)."""
    if tensor.dtype is not dtypes.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if tensor.numel() and bool((tensor < 0).any()):
        raise RuntimeError("Class values must be non-negative.")
    if num_classes == -1:
        num_classes = int(tensor.max().item()) + 1 if tensor.numel() else 0
    elif tensor.numel() and bool((tensor >= num_classes).any()):
        raise RuntimeError("Class values must be smaller than num_classes.")
    return (tensor.unsqueeze(-1) == arange(num_classes)).long()


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """input divided by its p-norm over dim (the norm clamped below at eps)."""
    return input / input.norm(p, dim, keepdim=True).clamp_min(eps)


# ---- losses ---------------------------------------------------------------------------------------


def _reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """The reduction to apply, honouring the deprecated size_average/reduce arguments like PyTorch."""
    if size_average is not None or reduce is not None:
        warnings.warn("size_average and reduce args will be deprecated, please use reduction instead.",
                      stacklevel=3)
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _warn_if_broadcasting(input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
                      f"This will likely lead to incorrect results due to broadcasting. Please ensure they have "
                      f"the same size.", stacklevel=3)


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean squared error (optionally weighted elementwise)."""
    reduction = _reduction(size_average, reduce, reduction)
    _warn_if_broadcasting(input, target)
    diff = input - target
    loss = diff * diff
    return _reduce(loss if weight is None else loss * weight, reduction)


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean absolute error (optionally weighted elementwise)."""
    reduction = _reduction(size_average, reduce, reduction)
    _warn_if_broadcasting(input, target)
    loss = (input - target).abs()
    return _reduce(loss if weight is None else loss * weight, reduction)


def _quadratic_then_linear(diff: Tensor, cut: float, slope: float) -> Tensor:
    """slope * (0.5 d^2 / cut) where d < cut, slope * (d - cut / 2) above: smooth L1 (slope 1) and Huber (cut)."""
    linear = diff - 0.5 * cut
    return ops.where(diff < cut, diff * diff * (0.5 * slope / cut), linear if slope == 1 else linear * slope)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Quadratic (0.5 d^2 / beta) where |d| < beta, linear (|d| - beta/2) above."""
    reduction = _reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    _warn_if_broadcasting(input, target)
    diff = (input - target).abs()
    if beta == 0.0:
        return _reduce(diff, reduction)
    return _reduce(_quadratic_then_linear(diff, beta, 1.0), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """Quadratic (0.5 d^2) where |d| < delta, linear (delta (|d| - delta/2)) above; optionally weighted."""
    reduction = _reduction(None, None, reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    _warn_if_broadcasting(input, target)
    loss = _quadratic_then_linear((input - target).abs(), delta, delta)
    return _reduce(loss if weight is None else loss * weight, reduction)


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL divergence of target from input (log-probabilities): target * (log target - input), 0 where target is 0.

    'batchmean' divides the sum by the batch size (dim 0); 'mean' by the element count, with PyTorch's warning.
    """
    reduction = "batchmean" if reduction == "batchmean" else _reduction(size_average, reduce, reduction)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        zero = target == 0
        entropy = ops.where(zero, 0.0, target * ops.where(zero, 1.0, target).log())  # xlogy(target, target)
        loss = entropy - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    return _reduce(loss, reduction)


def _class_dim(input: Tensor) -> int:
    """Where the classes are: dim 0 for a single unbatched sample, else dim 1."""
    return 0 if input.ndim == 1 else 1


def _check_class_targets(input: Tensor, target: Tensor, weight: Tensor | None) -> None:
    """Raise like PyTorch unless target holds one int64 class index per sample (and weight one per class)."""
    if target._data.dtype != np.int64:
        raise RuntimeError(f"expected scalar type Long but found {_legacy_kind(target.dtype)}")
    shape, target_shape = input._data.shape, target._data.shape
    if not shape:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    if len(shape) > 1 and target_shape and target_shape[0] != shape[0]:
        raise ValueError(f"Expected input batch_size ({shape[0]}) to match target batch_size "
                         f"({target_shape[0]}).")
    expected = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    if target_shape != expected:
        raise RuntimeError(f"Expected target size {list(expected)}, got {list(target_shape)}")
    classes = shape[_class_dim(input)]
    if weight is not None and weight._data.shape != (classes,):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no classes but got "
                           f"weight tensor of shape: {list(weight.shape)}")


def _any_ignored(target: Tensor, ignore_index) -> bool:
    """Whether some target is ignore_index. A traced step records the test (its outcome becomes a guard);
    eagerly, NumPy compares the int64 targets with an int directly, which is the same test without two ops."""
    if TRACE.tracer is None and type(ignore_index) is int:
        return bool((target._data == ignore_index).any())
    return bool((target == ignore_index).any())


def _pick(values: Tensor, target: Tensor) -> Tensor:
    """values[..., target, ...] along the class dim: one entry per sample."""
    dim = _class_dim(values)
    return values.gather(dim, target.unsqueeze(dim)).squeeze(dim)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
             ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices given log-probabilities (classes in dim 1, or 0 unbatched).

    With 'mean', the sum is divided by the total weight of the non-ignored targets, like PyTorch.
    """
    reduction = _reduction(size_average, reduce, reduction)
    _check_class_targets(input, target, weight)
    if weight is None and not _any_ignored(target, ignore_index):
        # The common case, in few ops (bool() of a tensor becomes a guard when the step is compiled).
        return _reduce(-_pick(input, target), reduction)
    valid = target != ignore_index
    safe_target = ops.where(valid, target, 0)  # ignored entries may hold any value, e.g. -100
    sample_weight = valid.to(input.dtype) if weight is None else weight[safe_target] * valid
    loss = -_pick(input, safe_target) * sample_weight
    if reduction == "mean":
        return _weighted_mean(loss.sum(), sample_weight.sum())
    return _reduce(loss, reduction)


def _weighted_mean(total: Tensor, weight: Tensor) -> Tensor:
    """total / weight; NaN with a zero gradient when every target is ignored (weight 0), as in PyTorch."""
    empty = weight == 0
    return ops.where(empty, math.nan, total / ops.where(empty, 1.0, weight))


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
                  ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dim, then nll_loss (class indices) or soft-target cross entropy.

    A target with the input's shape holds class probabilities; otherwise it holds class indices.
    """
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    dim = _class_dim(input)
    log_probs = input.log_softmax(dim)
    if target.shape == input.shape:
        return _soft_target_cross_entropy(log_probs, target, weight, reduction, label_smoothing)
    loss = nll_loss(log_probs, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0.0:
        return loss
    # Smoothing mixes in the loss against the uniform distribution, reduced with nll_loss's normalization.
    valid = target != ignore_index
    per_class = log_probs if weight is None else log_probs * _per_class(weight, log_probs)
    smooth = -per_class.sum(dim) * valid
    if reduction == "mean":
        total_weight = valid.sum() if weight is None else (weight[ops.where(valid, target, 0)] * valid).sum()
        smooth = _weighted_mean(smooth.sum(), total_weight)
    else:
        smooth = _reduce(smooth, reduction)
    return loss * (1.0 - label_smoothing) + smooth * (label_smoothing / input.shape[dim])


def _soft_target_cross_entropy(log_probs: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
                               label_smoothing: float) -> Tensor:
    """-sum_c target_c * weight_c * log_prob_c per sample; 'mean' averages over samples (not weights)."""
    if not target.is_floating_point():
        raise RuntimeError(f"Expected floating point type for target with class probabilities, got "
                           f"{_legacy_kind(target.dtype)}")
    dim = _class_dim(log_probs)
    if label_smoothing > 0.0:
        target = target * (1.0 - label_smoothing) + label_smoothing / log_probs.shape[dim]
    per_class = log_probs * target
    if weight is not None:
        per_class = per_class * _per_class(weight, log_probs)
    return _reduce(-per_class.sum(dim), reduction)


def _per_class(weight: Tensor, like: Tensor) -> Tensor:
    """A per-class weight shaped to broadcast along like's class dim."""
    return weight.reshape((-1,) + (1,) * (like.ndim - 2)) if like.ndim > 2 else weight


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) on probabilities p, with the logs clamped at -100 like PyTorch."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input size "
                         f"({input.shape}) is deprecated. Please ensure they have the same size.")
    loss = -(target * input.log().clamp_min(-100.0) + (1.0 - target) * (1.0 - input).log().clamp_min(-100.0))
    return _reduce(loss if weight is None else loss * weight, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross entropy on logits x: (1 - t) x - (1 + (pos_weight - 1) t) log(sigmoid(x)), stably."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    log_sigmoid = logsigmoid(input)
    if pos_weight is not None:
        log_sigmoid = log_sigmoid * ((pos_weight - 1.0) * target + 1.0)
    loss = (1.0 - target) * input - log_sigmoid
    return _reduce(loss if weight is None else loss * weight, reduction)
