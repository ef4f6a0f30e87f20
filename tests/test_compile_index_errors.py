"""A compiled step never trains silently on bad indices: replays raise what the eager step raises,
and a replay that raises changes nothing (parameters, .grad, optimizer state).

Each case runs one sequence of calls eagerly and compiled (per backend), the bad call at position 3:
call 0 runs eagerly, call 1 traces, calls 2 and 3 replay.
"""
import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn as nn
import tracegrad.nn.functional as F

pytestmark = pytest.mark.usefixtures("backend")  # every test runs per compiling backend

CALLS = 6
BAD_CALL = 3
X = tg.tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
GOOD_LABELS = [0, 1, 2, 3, 1]


def _classifier():
    """A linear classifier over 4 classes and a cross-entropy training step for it."""
    tg.manual_seed(0)
    model = nn.Linear(3, 4)
    opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return model, opt, step


def _embedding():
    """A table of 5 rows read with an integer index tensor (``table[idx]``) and an SGD step on it."""
    tg.manual_seed(0)
    table = nn.Parameter(tg.randn(5, 3))
    opt = tg.optim.SGD([table], lr=0.1, momentum=0.9)

    def step(x, idx):
        opt.zero_grad()
        loss = (table[idx] * x[:4]).sum()
        loss.backward()
        opt.step()
        return loss
    return table, opt, step


def _state(params: list, opt) -> list:
    """Copies of everything a step may change: parameters, their .grad, the optimizer's state."""
    arrays = [p.detach().numpy() for p in params] + [p.grad.numpy() for p in params if p.grad is not None]
    arrays += [v.numpy() for s in opt.state.values() for v in s.values() if isinstance(v, tg.Tensor)]
    return [a.copy() for a in arrays]


def _outcomes(make, step_arguments, compiled: bool) -> list:
    """Per call: ('ok', loss) or (exception class, message); a compiled call that raises changes nothing."""
    owner, opt, step = make()
    params = list(owner.parameters()) if isinstance(owner, nn.Module) else [owner]
    fn = tg.compile(step) if compiled else step
    outcomes = []
    for k in range(CALLS):
        before = _state(params, opt)
        try:
            outcomes.append(("ok", float(fn(*step_arguments(k)))))
        except Exception as error:  # noqa: BLE001 - the test compares whatever is raised
            outcomes.append((type(error), str(error)))
            if compiled:
                after = _state(params, opt)
                assert len(after) == len(before) and all(map(np.array_equal, before, after)), \
                    f"call {k} raised {type(error).__name__} but changed the step's state"
    return outcomes


def _assert_compiled_equals_eager(make, step_arguments) -> list:
    eager = _outcomes(make, step_arguments, compiled=False)
    compiled = _outcomes(make, step_arguments, compiled=True)
    for k, (want, got) in enumerate(zip(eager, compiled)):
        assert got[0] == want[0], f"call {k}: eager gave {want}, compiled {got}"
        if want[0] == "ok":
            np.testing.assert_allclose(got[1], want[1], rtol=1e-5, err_msg=f"call {k}")
        else:
            assert got[1] == want[1], f"call {k}"
    return eager


def _labels(bad: list):
    return lambda k: (X, tg.tensor(bad if k == BAD_CALL else GOOD_LABELS[k % 2:] + GOOD_LABELS[:k % 2]))


def test_a_negative_label_raises_like_eager_and_changes_nothing():
    eager = _assert_compiled_equals_eager(_classifier, _labels([0, 1, -1, 3, 2]))
    assert eager[BAD_CALL] == (RuntimeError, "index -1 is out of bounds for dimension 1 with size 4")


def test_an_out_of_range_label_raises_like_eager_and_changes_nothing():
    eager = _assert_compiled_equals_eager(_classifier, _labels([0, 1, 2, 7, 2]))
    assert eager[BAD_CALL] == (RuntimeError, "index 7 is out of bounds for dimension 1 with size 4")


def test_ignore_index_on_a_later_call_is_ignored_as_eagerly():
    """The traced step saw no ignored target: the guard on that must fail before the gather reads -100."""
    eager = _assert_compiled_equals_eager(_classifier, _labels([0, -100, 2, -100, 1]))
    assert all(outcome[0] == "ok" for outcome in eager)


def _indices(bad: list):
    return lambda k: (X, tg.tensor(bad if k == BAD_CALL else [k % 5, 1, 4, 2]))


def test_a_negative_index_tensor_counts_from_the_end_as_eagerly():
    eager = _assert_compiled_equals_eager(_embedding, _indices([0, -1, 3, -5]))
    assert all(outcome[0] == "ok" for outcome in eager)


@pytest.mark.parametrize("bad, value", [([0, 5, 1, 2], 5), ([0, 1, -6, 7], -6)])
def test_an_out_of_range_index_tensor_raises_like_eager_and_changes_nothing(bad, value):
    eager = _assert_compiled_equals_eager(_embedding, _indices(bad))
    assert eager[BAD_CALL] == (IndexError, f"index {value} is out of bounds for dimension 0 with size 5")
