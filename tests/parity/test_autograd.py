"""Autograd semantics: accumulation, graph lifetime, higher order, hooks, in-place checks, grad modes."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error, randn  # noqa: E402

X = randn(3, seed=1)
Y = randn(3, seed=2)


def test_grad_accumulates_over_backward_calls():
    def snippet(lib, x):
        loss = (x * x).sum()
        loss.backward(retain_graph=True)
        first = x.grad.clone()
        loss.backward()
        (x * 3).sum().backward()
        return first, x.grad
    check(snippet, X, backward=False)


def test_second_backward_without_retain_graph_is_an_error():
    def snippet(lib, x):
        loss = (x.exp() * x).sum()
        loss.backward()
        loss.backward()
    check_error(snippet, X)


def test_backward_of_non_scalar_needs_gradient():
    check_error(lambda lib, x: (x * 2).backward(), X)


def test_backward_of_non_scalar_with_gradient():
    def snippet(lib, x):
        (x * x).backward(lib.tensor([1.0, 0.5, -1.0]))
        return x.grad
    check(snippet, X, backward=False)


def test_backward_with_wrong_gradient_shape_is_an_error():
    check_error(lambda lib, x: (x * x).backward(lib.ones(2)), X)


def test_backward_of_tensor_without_grad_is_an_error():
    check_error(lambda lib, x: (x * 2).sum().backward(), X, requires_grad=False)


def test_backward_inputs_restricts_accumulation():
    def snippet(lib, x, y):
        (x * y).sum().backward(inputs=[x])
        return x.grad, y.grad
    check(snippet, X, Y, backward=False)


def test_autograd_backward_with_several_roots():
    def snippet(lib, x, y):
        lib.autograd.backward([(x * y).sum(), x * 2], [lib.tensor(2.0), lib.ones(3)])
        return x.grad, y.grad
    check(snippet, X, Y, backward=False)


def test_autograd_grad_returns_gradients_without_touching_grad():
    def snippet(lib, x, y):
        gx, gy = lib.autograd.grad((x * y.exp()).sum(), [x, y])
        return gx, gy, x.grad, y.grad
    check(snippet, X, Y, backward=False)


def test_autograd_grad_with_grad_outputs():
    check(lambda lib, x: lib.autograd.grad(x.sin(), x, grad_outputs=lib.tensor([1.0, 2.0, 3.0])), X,
          backward=False)


def test_autograd_grad_unused_input():
    def snippet(lib, x, y):
        return lib.autograd.grad((x * 2).sum(), [x, y], allow_unused=True)
    check(snippet, X, Y, backward=False)
    check_error(lambda lib, x, y: lib.autograd.grad((x * 2).sum(), [x, y]), X, Y)


def test_second_derivative_with_create_graph():
    def snippet(lib, x):
        y = (x ** 3).sum()
        (first,) = lib.autograd.grad(y, x, create_graph=True)
        (second,) = lib.autograd.grad(first.sum(), x, create_graph=True)
        return first, second  # the harness then back-propagates through both: a third derivative
    check(snippet, X)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
def test_backward_with_create_graph_makes_differentiable_grad():
    def snippet(lib, x):
        (x.sin() * x).sum().backward(create_graph=True)
        first = x.grad
        x.grad = None
        first.sum().backward()
        return first, x.grad
    check(snippet, X, backward=False)


def test_second_derivative_of_composite_ops():
    def snippet(lib, x, w):
        loss = lib.log_softmax(x @ w, dim=1).sum() + lib.tanh(x).norm()
        (gw,) = lib.autograd.grad(loss, w, create_graph=True)
        return (gw ** 2).sum()
    check(snippet, randn(2, 3, seed=1), randn(3, 4, seed=2))


def test_without_create_graph_the_gradient_is_constant():
    def snippet(lib, x):
        (g,) = lib.autograd.grad((x ** 2).sum(), x)
        return g, g.requires_grad, g.grad_fn is None
    check(snippet, X, backward=False)


def test_hooks_change_the_gradient_and_can_be_removed():
    def snippet(lib, x):
        seen = []
        handle = x.register_hook(lambda grad: grad * 10)
        middle = x * 2
        middle.register_hook(lambda grad: seen.append(grad.clone()))
        (middle * middle).sum().backward()
        first = x.grad.clone()
        handle.remove()
        x.grad = None
        (x * 1).sum().backward()
        return first, seen, x.grad
    check(snippet, X, backward=False)


def test_retain_grad_keeps_non_leaf_gradient():
    def snippet(lib, x):
        middle = x.exp()
        middle.retain_grad()
        (middle * 3).sum().backward()
        return middle.grad, x.grad
    check(snippet, X, backward=False)


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_non_leaf_grad_is_none_without_retain_grad():
    def snippet(lib, x):
        middle = x * 2
        middle.sum().backward()
        return middle.grad
    check(snippet, X, backward=False)


def test_unused_leaf_has_no_grad():
    def snippet(lib, x, y):
        (x * 2).sum().backward()
        return x.grad, y.grad
    check(snippet, X, Y, backward=False)


def test_is_leaf_requires_grad_and_grad_fn():
    def snippet(lib, x):
        constant = lib.ones(3)
        made = {"leaf": x, "op": x * 2, "constant_op": constant * 2, "detached": (x * 2).detach(),
                "clone": x.clone(), "mixed": x + constant}
        return {name: (t.is_leaf, t.requires_grad, t.grad_fn is None) for name, t in made.items()}
    check(snippet, X, backward=False)


def test_next_functions_structure():
    def snippet(lib, x, c):
        nodes = (x * c.detach()).grad_fn.next_functions
        return [(node is None, index, getattr(node, "variable", None) is x) for node, index in nodes]
    check(snippet, X, Y, backward=False)


def test_modifying_a_saved_tensor_fails_at_backward():
    def snippet(lib, x):
        y = x.sigmoid()  # the sigmoid gradient uses its output
        y.mul_(2)
        y.sum().backward()
    check_error(snippet, X)


def test_modifying_a_saved_input_fails_at_backward():
    def snippet(lib, x):
        a = x * 1
        b = a * a
        a += 1
        b.sum().backward()
    check_error(snippet, X)


def test_in_place_on_unsaved_tensor_is_fine():
    def snippet(lib, x):
        a = x * 2
        b = a + 1  # addition saves nothing, so changing a afterwards is allowed
        a.add_(1)
        return a, b
    check(snippet, X)


@pytest.mark.parametrize("op", ["add_", "sub_", "mul_", "div_", "clamp_", "copy_", "fill_", "zero_", "isub"])
def test_in_place_ops_values_and_gradients(op):
    def snippet(lib, x, y):
        target = x * 1
        if op == "clamp_":
            target.clamp_(-0.5, 0.5)
        elif op == "fill_":
            target.fill_(2.0)
        elif op == "zero_":
            target.zero_()
        elif op == "isub":
            target -= y
        else:
            getattr(target, op)(y)
        return target * target
    check(snippet, X, np.abs(Y) + 0.5)


def test_in_place_on_leaf_requiring_grad_is_an_error():
    check_error(lambda lib, x: x.add_(1), X)


def test_in_place_on_leaf_under_no_grad_is_allowed():
    def snippet(lib, x):
        (x * x).sum().backward()
        with lib.no_grad():
            x -= 0.1 * x.grad
        return x, x.requires_grad, x.is_leaf
    check(snippet, X, backward=False)


def test_requires_grad_flags_can_only_change_on_float_leaves():
    check_error(lambda lib, x: (x * 2).requires_grad_(False), X)
    check_error(lambda lib: lib.tensor([1, 2]).requires_grad_())


def test_detach_shares_memory_and_cuts_the_graph():
    def snippet(lib, x):
        y = x * 2
        cut = y.detach()
        cut[0] = 100.0
        z = x.clone()
        z.detach_()
        return y, cut.requires_grad, cut.is_leaf, z.requires_grad, z.is_leaf, (cut * x).sum()
    check(snippet, X)


def test_requires_grad_on_a_fresh_leaf():
    def snippet(lib, x):
        x.requires_grad_()
        (x * x).sum().backward()
        return x.grad, x.is_leaf
    check(snippet, X, requires_grad=False, backward=False)


def test_no_grad_and_enable_grad():
    def snippet(lib, x):
        with lib.no_grad():
            a = x * 2
            state = lib.is_grad_enabled()
            with lib.enable_grad():
                b = x * 2
        return a, b, state, lib.is_grad_enabled(), a.grad_fn is None, a.is_leaf
    check(snippet, X)


def test_grad_modes_as_decorators():
    def snippet(lib, x):
        @lib.no_grad()
        def without_grad(t):
            return t * 2

        @lib.enable_grad()
        def with_grad(t):
            return t * 3

        with lib.no_grad():
            inner = with_grad(x)
        return without_grad(x), inner, lib.is_grad_enabled()
    check(snippet, X)


def test_set_grad_enabled_context():
    def snippet(lib, x):
        with lib.set_grad_enabled(False):
            off = x * 2
            state_off = lib.is_grad_enabled()
        with lib.set_grad_enabled(True):
            on = x * 2
        return off, on, state_off, lib.is_grad_enabled()
    check(snippet, X)


def test_grad_mode_restored_after_exception():
    def snippet(lib):
        try:
            with lib.no_grad():
                raise ValueError("leave the block")
        except ValueError:
            pass
        return lib.is_grad_enabled()
    check(snippet)


def test_inference_mode():
    def snippet(lib, x):
        with lib.inference_mode():
            y = x * 2
            inside = (lib.is_inference_mode_enabled(), lib.is_grad_enabled())
        return y, y.requires_grad, inside, lib.is_inference_mode_enabled()
    check(snippet, X)


def test_inference_tensor_cannot_be_saved_for_backward():
    def snippet(lib, x):
        with lib.inference_mode():
            frozen = lib.ones(3)
        (x * frozen).sum().backward()
    check_error(snippet, X)


def test_custom_function():
    def snippet(lib, x, y):
        class ScaledProduct(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, b, scale):
                ctx.save_for_backward(a, b)
                ctx.scale = scale
                return a * b * scale

            @staticmethod
            def backward(ctx, grad):
                a, b = ctx.saved_tensors
                flags = ctx.needs_input_grad
                return (grad * b * ctx.scale if flags[0] else None,
                        grad * a * ctx.scale if flags[1] else None, None)

        out = ScaledProduct.apply(x, y, 3.0)
        return out, out.grad_fn is not None, ScaledProduct.apply(x, y.detach(), 2.0)
    check(snippet, X, Y)


def test_gradcheck_accepts_a_correct_gradient():
    check(lambda lib, x, w: lib.autograd.gradcheck(lambda a, b: (a @ b).tanh(), (x, w)),
          randn(2, 3, dtype=np.float64, seed=1), randn(3, 2, dtype=np.float64, seed=2), backward=False)
