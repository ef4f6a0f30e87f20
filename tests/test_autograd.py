"""Autograd semantics, each checked against hand-derived gradients (PyTorch's behaviour is the spec)."""
import numpy as np
import pytest

import tracegrad as torch
from tracegrad import autograd


def leaf(*values: float, dtype=None) -> torch.Tensor:
    """A float leaf holding ``values`` that requires grad."""
    return torch.tensor(list(values), dtype=dtype, requires_grad=True)


def close(t: torch.Tensor, expected) -> None:
    """Assert a tensor's values equal ``expected`` (float32 tolerance)."""
    np.testing.assert_allclose(t.detach().numpy(), np.asarray(expected, dtype=np.float64), rtol=1e-5, atol=1e-6)


# ---- accumulation into .grad -------------------------------------------------------------------

def test_grad_accumulates_across_backward_calls_and_none_resets_it():
    x = leaf(1.0, 2.0, 3.0)
    (x * x).sum().backward()
    close(x.grad, [2.0, 4.0, 6.0])
    (3 * x).sum().backward()
    close(x.grad, [5.0, 7.0, 9.0])
    x.grad = None  # the zero_grad(set_to_none=True) idiom
    (x * x).sum().backward()
    close(x.grad, [2.0, 4.0, 6.0])


# ---- graph lifetime ------------------------------------------------------------------------------

@pytest.mark.parametrize("make_loss", [
    lambda x, y: (x * y).sum(),
    lambda x, y: x.exp().sum(),
], ids=["mul", "exp"])
def test_second_backward_through_freed_graph_raises(make_loss):
    x, y = leaf(1.0, 2.0), leaf(3.0, 4.0)
    loss = make_loss(x, y)
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf(1.0, 2.0)
    loss = x.exp().sum()
    loss.backward(retain_graph=True)
    loss.backward()
    close(x.grad, 2 * np.exp([1.0, 2.0]))


def test_graph_that_saves_nothing_can_be_backwarded_twice():
    x = leaf(1.0, 2.0)
    loss = (x + 1).sum()
    loss.backward()
    loss.backward()
    close(x.grad, [2.0, 2.0])


# ---- seeding backward ---------------------------------------------------------------------------

def test_backward_of_non_scalar_without_gradient_raises():
    x = leaf(1.0, 2.0)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * x).backward()


def test_backward_of_non_scalar_with_gradient():
    x = leaf(1.0, 2.0)
    (x * x).backward(gradient=torch.tensor([1.0, -0.5]))
    close(x.grad, [2.0, -2.0])


def test_backward_with_gradient_of_wrong_shape_raises():
    x = leaf(1.0, 2.0)
    with pytest.raises(RuntimeError, match="shape"):
        (x * x).backward(torch.ones(3))


def test_backward_of_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.tensor([1.0, 2.0]).sum().backward()


# ---- numpy() -------------------------------------------------------------------------------------

def test_numpy_of_tensor_requiring_grad_raises():
    with pytest.raises(RuntimeError, match="detach"):
        leaf(1.0).numpy()


def test_detach_numpy_shares_memory():
    x = leaf(1.0, 2.0)
    arr = x.detach().numpy()
    arr[0] = 10.0
    assert x.tolist() == [10.0, 2.0]


# ---- version counters ------------------------------------------------------------------------------

def test_modifying_a_saved_output_in_place_raises_at_backward():
    x = leaf(1.0, 2.0)
    y = x.exp()        # exp saves its output
    y.add_(1)          # allowed here; the error comes when backward needs the old value
    with pytest.raises(RuntimeError, match="inplace operation"):
        y.sum().backward()


def test_modifying_a_saved_non_leaf_input_in_place_raises_at_backward():
    x = leaf(1.0, 2.0)
    w = leaf(3.0, 4.0) * 1  # a non-leaf, so in-place is allowed
    a = x * w               # saves w for x's gradient
    w.mul_(2)
    with pytest.raises(RuntimeError, match="inplace operation"):
        a.sum().backward()


def test_in_place_through_detach_bumps_the_shared_version():
    x = leaf(1.0, 2.0)
    y = x.exp()
    y.detach().add_(1)
    with pytest.raises(RuntimeError, match="inplace operation"):
        y.sum().backward()


def test_in_place_that_does_not_touch_saved_values_works():
    x = leaf(1.0, 2.0)
    y = x + 1  # add saves nothing
    y.mul_(2)
    close(y, [4.0, 6.0])
    y.sum().backward()
    close(x.grad, [2.0, 2.0])


# ---- in-place on leaves and setitem ----------------------------------------------------------------

def test_in_place_on_leaf_requiring_grad_raises():
    x = leaf(1.0, 2.0)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x.add_(1)


def test_in_place_on_leaf_inside_no_grad_works():
    x = leaf(1.0, 2.0)
    with torch.no_grad():
        x.mul_(3)
    close(x, [3.0, 6.0])
    assert x.is_leaf and x.requires_grad
    (x * x).sum().backward()
    close(x.grad, [6.0, 12.0])


def test_setitem_on_non_leaf_gives_gradients_to_tensor_and_value():
    x = leaf(1.0, 2.0, 3.0)
    v = torch.tensor(5.0, requires_grad=True)
    y = x * 2
    y[1] = v * 3  # y = [2*x0, 3*v, 2*x2]
    (y * torch.tensor([1.0, 10.0, 100.0])).sum().backward()
    close(x.grad, [2.0, 0.0, 200.0])
    close(v.grad, 30.0)


# ---- inference mode --------------------------------------------------------------------------------

def test_inference_tensor_saved_for_backward_raises():
    with torch.inference_mode():
        t = torch.ones(2)
    with pytest.raises(RuntimeError, match="Inference tensors"):
        leaf(1.0, 2.0) * t  # mul saves t for the gradient of the leaf


def test_in_place_on_inference_tensor_outside_inference_mode_raises():
    with torch.inference_mode():
        t = torch.ones(2)
        t.add_(1)  # allowed inside
    close(t, [2.0, 2.0])
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor"):
        t.add_(1)


# ---- hooks and retain_grad -----------------------------------------------------------------------

def test_hook_on_leaf_replaces_its_gradient():
    x = leaf(1.0, 2.0)
    x.register_hook(lambda g: g * 10)
    (x * x).sum().backward()
    close(x.grad, [20.0, 40.0])


def test_hook_on_non_leaf_replaces_the_gradient_flowing_upstream():
    x = leaf(1.0, 2.0)
    y = x * 3
    seen = []
    y.register_hook(lambda g: seen.append(g.tolist()) or g + 1)
    (y * y).sum().backward()
    assert seen == [[6.0, 12.0]]
    close(x.grad, [21.0, 39.0])  # 3 * (2y + 1)


def test_removed_hook_is_not_called():
    x = leaf(1.0, 2.0)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1) or g * 10)
    handle.remove()
    (x * 2).sum().backward()
    assert calls == []
    close(x.grad, [2.0, 2.0])


def test_hooks_run_in_registration_order_each_seeing_the_previous_result():
    x = leaf(1.0, 2.0)
    y = x * 3
    order = []
    y.register_hook(lambda g: order.append(("first", g.tolist())) or g * 2)
    y.register_hook(lambda g: order.append(("second", g.tolist())))
    x.register_hook(lambda g: order.append(("leaf", g.tolist())))
    y.sum().backward()
    assert order == [("first", [1.0, 1.0]), ("second", [2.0, 2.0]), ("leaf", [6.0, 6.0])]
    close(x.grad, [6.0, 6.0])


def test_retain_grad_keeps_and_accumulates_non_leaf_gradient():
    x = leaf(1.0, 2.0)
    y = x * 3
    y.retain_grad()
    assert y.retains_grad
    loss = (y * y).sum()
    loss.backward(retain_graph=True)
    close(y.grad, [6.0, 12.0])
    loss.backward()
    close(y.grad, [12.0, 24.0])


def test_non_leaf_grad_is_none_without_retain_grad():
    x = leaf(1.0, 2.0)
    y = x * 3
    (y * y).sum().backward()
    assert y.grad is None
    assert x.grad is not None


# ---- frozen and unused inputs ----------------------------------------------------------------------

def test_frozen_and_unused_parameters_keep_grad_none():
    x = leaf(1.0, 2.0)
    frozen = torch.tensor([3.0, 4.0])
    unused = leaf(5.0, 6.0)
    (x * frozen).sum().backward()
    close(x.grad, [3.0, 4.0])
    assert frozen.grad is None
    assert unused.grad is None


def test_grad_of_unused_input_raises_unless_allowed():
    x, unused = leaf(1.0, 2.0), leaf(3.0)
    with pytest.raises(RuntimeError, match="allow_unused"):
        autograd.grad((x * x).sum(), [x, unused])


def test_grad_of_unused_input_with_allow_unused_is_none():
    x, unused = leaf(1.0, 2.0), leaf(3.0)
    gx, gu = autograd.grad((x * x).sum(), [x, unused], allow_unused=True)
    close(gx, [2.0, 4.0])
    assert gu is None


def test_grad_of_unused_input_with_materialize_grads_is_zeros():
    x, unused = leaf(1.0, 2.0), leaf(3.0, 4.0, 5.0)
    _, gu = autograd.grad((x * x).sum(), [x, unused], materialize_grads=True)
    assert gu.shape == unused.shape
    close(gu, [0.0, 0.0, 0.0])


# ---- autograd.grad ---------------------------------------------------------------------------------

def test_grad_with_grad_outputs_and_without_touching_dot_grad():
    x = leaf(1.0, 2.0)
    (g,) = autograd.grad(x * x, x, grad_outputs=torch.tensor([3.0, -1.0]))
    close(g, [6.0, -4.0])
    assert x.grad is None
    assert not g.requires_grad


def test_grad_with_several_outputs_and_inputs():
    x, y = leaf(1.0, 2.0), leaf(3.0, 4.0)
    out1 = (x * y).sum()
    out2 = (x * x).sum()
    gx, gy = autograd.grad([out1, out2], [x, y])
    close(gx, [3.0 + 2.0, 4.0 + 4.0])  # y + 2x
    close(gy, [1.0, 2.0])              # x


@pytest.mark.parametrize("f, d2f, d3f", [
    (lambda x: x ** 3, lambda v: 6 * v, lambda v: 6 * np.ones_like(v)),
    (lambda x: x.sin(), lambda v: -np.sin(v), lambda v: -np.cos(v)),
], ids=["cube", "sin"])
def test_second_and_third_derivatives_with_create_graph(f, d2f, d3f):
    values = np.array([0.5, -1.0, 2.0])
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    (d1,) = autograd.grad(f(x).sum(), x, create_graph=True)
    assert d1.requires_grad
    (d2,) = autograd.grad(d1.sum(), x, create_graph=True)
    close(d2, d2f(values))
    (d3,) = autograd.grad(d2.sum(), x)
    close(d3, d3f(values))


def test_mixed_partial_derivatives_of_a_product():
    x = torch.tensor(2.0, requires_grad=True)
    y = torch.tensor(-3.0, requires_grad=True)
    z = x * x * y  # dz/dx = 2xy, d2z/dydx = 2x, d2z/dx2 = 2y
    (dx,) = autograd.grad(z, x, create_graph=True)
    close(dx, -12.0)
    dxx, dxy = autograd.grad(dx, [x, y])
    close(dxx, -6.0)
    close(dxy, 4.0)


def test_backward_with_create_graph_makes_grad_differentiable():
    x = leaf(1.0, 2.0)
    (x ** 3).sum().backward(create_graph=True)
    first = x.grad
    assert first.requires_grad
    (g2,) = autograd.grad(first.sum(), x)
    close(g2, [6.0, 12.0])


def test_backward_inputs_accumulates_only_into_listed_tensors():
    x, y = leaf(1.0, 2.0), leaf(3.0, 4.0)
    (x * y).sum().backward(inputs=[x])
    close(x.grad, [3.0, 4.0])
    assert y.grad is None


# ---- detach, requires_grad flags ------------------------------------------------------------------

def test_detach_shares_data_and_is_cut_from_the_graph():
    x = leaf(1.0, 2.0)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    (d * x).sum().backward()  # d is a constant: d(d*x)/dx = d
    close(x.grad, [1.0, 2.0])
    d.add_(1)
    close(x, [2.0, 3.0])


def test_detach_in_place_turns_a_non_leaf_into_a_leaf():
    y = leaf(1.0, 2.0) * 2
    assert y.detach_() is y
    assert not y.requires_grad and y.is_leaf and y.grad_fn is None


def test_requires_grad_in_place_setter():
    t = torch.tensor([1.0, 2.0])
    assert t.requires_grad_() is t
    assert t.requires_grad and t.is_leaf
    t.requires_grad_(False)
    assert not t.requires_grad


def test_turning_off_requires_grad_of_non_leaf_raises():
    y = leaf(1.0) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        torch.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        torch.tensor([1, 2]).requires_grad_()


# ---- custom Functions ------------------------------------------------------------------------------

class MyExp(autograd.Function):
    """exp, saving its output for backward."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class Scale(autograd.Function):
    """x * factor for a Python-number factor (which gets no gradient)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x * factor

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


class Cube(autograd.Function):
    """x ** 3 with a backward written in tracegrad ops, so it is itself differentiable."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


def test_custom_function_forward_backward_and_saved_tensors():
    x = leaf(0.0, 1.0)
    y = MyExp.apply(x)
    close(y, np.exp([0.0, 1.0]))
    assert y.grad_fn.name() == "MyExpBackward"
    y.sum().backward()
    close(x.grad, np.exp([0.0, 1.0]))


def test_custom_function_saved_tensor_modified_in_place_raises():
    x = leaf(0.0, 1.0)
    y = MyExp.apply(x)
    y.mul_(2)
    with pytest.raises(RuntimeError, match="inplace operation"):
        y.sum().backward()


def test_custom_function_with_non_tensor_argument():
    x = leaf(1.0, 2.0)
    y = Scale.apply(x, 4.0)
    close(y, [4.0, 8.0])
    y.sum().backward()
    close(x.grad, [4.0, 4.0])


def test_custom_function_needs_input_grad():
    seen = []

    class Record(autograd.Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen.append(ctx.needs_input_grad)
            return a * b * k

        @staticmethod
        def backward(ctx, grad):
            return grad, None, None

    Record.apply(leaf(1.0), torch.tensor([2.0]), 3.0)
    assert seen == [(True, False, False)]


def test_custom_function_unused_output_gets_materialized_zero_gradient():
    received = []

    class TwoOutputs(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g_double, g_triple):
            received.append(g_triple)
            return g_double * 2 + g_triple * 3

    x = leaf(1.0, 2.0)
    double, _ = TwoOutputs.apply(x)
    double.sum().backward()
    close(x.grad, [2.0, 2.0])
    (g_triple,) = received
    assert g_triple is not None
    close(g_triple, [0.0, 0.0])


@pytest.mark.parametrize("grads", [1, 3], ids=["too_few", "too_many"])
def test_custom_function_returning_wrong_number_of_gradients_raises(grads):
    class Wrong(autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, grad):
            return (grad,) * grads

    out = Wrong.apply(leaf(1.0), leaf(2.0))
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        out.sum().backward()


def test_custom_function_mark_non_differentiable():
    class ValueAndIndex(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            index = x.argmax().float()
            ctx.mark_non_differentiable(index)
            return x * 1, index

        @staticmethod
        def backward(ctx, grad_value, grad_index):
            return grad_value

    value, index = ValueAndIndex.apply(leaf(1.0, 5.0))
    assert value.requires_grad
    assert not index.requires_grad


def test_gradcheck_of_a_custom_function():
    x = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    assert autograd.gradcheck(MyExp.apply, (x,))
    assert autograd.gradcheck(Cube.apply, (x,))


def test_gradcheck_detects_a_wrong_backward():
    class WrongSquare(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x  # should be 2 * x

    x = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError):
        autograd.gradcheck(WrongSquare.apply, (x,))


def test_create_graph_through_a_custom_function():
    values = np.array([0.5, -2.0])
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    (d1,) = autograd.grad(Cube.apply(x).sum(), x, create_graph=True)
    close(d1, 3 * values ** 2)
    (d2,) = autograd.grad(d1.sum(), x)
    close(d2, 6 * values)


# ---- graph structure -------------------------------------------------------------------------------

GRAD_FN_NAMES = {
    "MulBackward0": lambda x, y: x * y,
    "AddBackward0": lambda x, y: x + y,
    "SubBackward0": lambda x, y: x - y,
    "DivBackward0": lambda x, y: x / y,
    "SumBackward0": lambda x, y: x.sum(),
    "MeanBackward0": lambda x, y: x.mean(),
    "ExpBackward0": lambda x, y: x.exp(),
    "SinBackward0": lambda x, y: x.sin(),
    "PowBackward0": lambda x, y: x ** 3,
    "ViewBackward0": lambda x, y: x.view(2),
}


@pytest.mark.parametrize("name", list(GRAD_FN_NAMES))
def test_grad_fn_names(name):
    op = GRAD_FN_NAMES[name]
    assert op(leaf(1.0, 2.0), leaf(3.0, 4.0)).grad_fn.name() == name


def test_next_functions_structure():
    x, y = leaf(1.0, 2.0), leaf(3.0, 4.0)
    z = x * y
    (x_node, x_nr), (y_node, y_nr) = z.grad_fn.next_functions
    assert type(x_node).__name__ == "AccumulateGrad" and x_node.variable is x and x_nr == 0
    assert type(y_node).__name__ == "AccumulateGrad" and y_node.variable is y and y_nr == 0
    assert x.is_leaf and x.grad_fn is None
    ((sum_input, _),) = z.sum().grad_fn.next_functions
    assert sum_input is z.grad_fn
    (_, (constant_node, _)) = (x * 2).grad_fn.next_functions
    assert constant_node is None


# ---- only grad modes stop recording ---------------------------------------------------------------

def test_ops_record_unless_a_grad_mode_says_otherwise():
    x = leaf(1.0, 2.0)
    constant = torch.tensor([3.0, 4.0])
    y = (x * constant).relu()
    assert y.requires_grad and y.grad_fn is not None
    assert not (constant * 2).requires_grad


def test_module_eval_does_not_stop_recording():
    from tracegrad import nn

    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    model.eval()
    out = model(torch.ones(4, 3))
    assert out.requires_grad and out.grad_fn is not None
    out.sum().backward()
    assert model[0].weight.grad is not None


# ---- deep graphs -----------------------------------------------------------------------------------

def test_deep_chain_backward_does_not_hit_recursion_limit():
    depth = 5000
    x = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y = x
    for _ in range(depth):
        y = y * 1.0001
    y.backward()
    close(x.grad, 1.0001 ** depth)


def test_leaf_grads_never_share_buffers_with_each_other_or_retained_grads():
    # add's backward hands the same cotangent to both inputs; adopting it twice would alias .grad buffers
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    (a + b).sum().backward()
    a.grad.mul_(5)
    assert b.grad.tolist() == [1.0, 1.0, 1.0]
    x = torch.ones(3, requires_grad=True)
    y = x * 1
    y.retain_grad()
    (y + 0.0).sum().backward()
    x.grad.zero_()
    assert y.grad.tolist() == [1.0, 1.0, 1.0]
    seed = torch.ones(3)
    leaf = torch.zeros(3, requires_grad=True)
    leaf.backward(seed)
    leaf.grad.add_(1)
    assert seed.tolist() == [1.0, 1.0, 1.0]
