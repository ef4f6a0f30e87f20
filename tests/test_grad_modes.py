"""Grad modes: no_grad, enable_grad, set_grad_enabled and inference_mode as contexts, calls and decorators."""
import pytest

import tracegrad as torch


@pytest.fixture(autouse=True)
def grad_enabled_after_each_test():
    """Turn grad back on after a test, so one failing test cannot change the mode seen by the next."""
    yield
    torch.set_grad_enabled(True)


def leaf() -> torch.Tensor:
    """A small float leaf that requires grad."""
    return torch.tensor([1.0, 2.0], requires_grad=True)


def records_graph(x: torch.Tensor) -> bool:
    """Whether an op on x is recorded in the current grad mode."""
    y = x * 2
    return y.requires_grad and y.grad_fn is not None


def test_grad_is_enabled_by_default():
    assert torch.is_grad_enabled()
    assert not torch.is_inference_mode_enabled()


def test_no_grad_stops_recording_and_restores_on_exit():
    x = leaf()
    with torch.no_grad():
        assert not torch.is_grad_enabled()
        assert not records_graph(x)
    assert torch.is_grad_enabled()
    assert records_graph(x)


def test_enable_grad_inside_no_grad_records():
    x = leaf()
    with torch.no_grad():
        with torch.enable_grad():
            assert torch.is_grad_enabled()
            assert records_graph(x)
        assert not torch.is_grad_enabled()


def test_set_grad_enabled_as_a_plain_call():
    try:
        torch.set_grad_enabled(False)
        assert not torch.is_grad_enabled()
        assert not records_graph(leaf())
    finally:
        torch.set_grad_enabled(True)
    assert torch.is_grad_enabled()


def test_set_grad_enabled_as_context_restores_previous_mode():
    x = leaf()
    with torch.set_grad_enabled(False):
        assert not records_graph(x)
    assert torch.is_grad_enabled()
    with torch.no_grad():
        with torch.set_grad_enabled(True):
            assert records_graph(x)
        assert not torch.is_grad_enabled()


def test_set_grad_enabled_as_decorator():
    @torch.set_grad_enabled(False)
    def forward(x):
        return x * 2

    # Decorating must not leave grad disabled; only calls of the function run without it.
    assert torch.is_grad_enabled()
    assert not forward(leaf()).requires_grad
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("decorator", [torch.no_grad, torch.no_grad()], ids=["bare", "called"])
def test_no_grad_decorator_with_and_without_parentheses(decorator):
    @decorator
    def forward(x):
        return x * 2, torch.is_grad_enabled()

    y, enabled = forward(leaf())
    assert not enabled
    assert not y.requires_grad
    assert torch.is_grad_enabled()
    assert forward.__name__ == "forward"


@pytest.mark.parametrize("decorator", [torch.enable_grad, torch.enable_grad()], ids=["bare", "called"])
def test_enable_grad_decorator_inside_no_grad(decorator):
    @decorator
    def forward(x):
        return x * 2

    with torch.no_grad():
        assert forward(leaf()).requires_grad
        assert not torch.is_grad_enabled()


def test_a_decorated_function_runs_in_its_mode_on_every_call():
    @torch.no_grad()
    def forward(x):
        return x * 2

    x = leaf()
    assert not forward(x).requires_grad
    assert not forward(x).requires_grad  # the same decorator object is re-entered
    assert torch.is_grad_enabled()


def test_inference_mode_as_context():
    x = leaf()
    with torch.inference_mode():
        assert torch.is_inference_mode_enabled()
        assert not torch.is_grad_enabled()
        y = x * 2
    assert not y.requires_grad
    assert not torch.is_inference_mode_enabled()
    assert torch.is_grad_enabled()


def test_inference_mode_false_inside_inference_mode_turns_it_off():
    with torch.inference_mode():
        with torch.inference_mode(False):
            assert not torch.is_inference_mode_enabled()
            assert torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled()


def test_inference_mode_as_decorator_with_parentheses():
    @torch.inference_mode()
    def forward(x):
        return x * 2, torch.is_inference_mode_enabled()

    y, enabled = forward(leaf())
    assert enabled
    assert not y.requires_grad
    assert not torch.is_inference_mode_enabled()


def test_inference_mode_as_bare_decorator():
    @torch.inference_mode
    def forward(x):
        return x * 2, torch.is_inference_mode_enabled()

    y, enabled = forward(leaf())
    assert enabled
    assert not y.requires_grad
    assert not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("make_mode", [
    torch.no_grad,
    lambda: torch.set_grad_enabled(False),
    torch.inference_mode,
], ids=["no_grad", "set_grad_enabled", "inference_mode"])
def test_mode_is_restored_after_an_exception(make_mode):
    with pytest.raises(ValueError):
        with make_mode():
            raise ValueError("boom")
    assert torch.is_grad_enabled()
    assert not torch.is_inference_mode_enabled()


def test_enable_grad_is_undone_after_an_exception_inside_no_grad():
    with torch.no_grad():
        with pytest.raises(ValueError):
            with torch.enable_grad():
                raise ValueError("boom")
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_decorated_function_restores_mode_after_an_exception():
    @torch.no_grad()
    def failing():
        raise KeyError("boom")

    with pytest.raises(KeyError):
        failing()
    assert torch.is_grad_enabled()
