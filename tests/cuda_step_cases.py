"""Whole training steps compiled with backend="cuda", run under Numba's CUDA simulator (tests/cudasim.py).

Each case runs one program twice, eagerly and compiled, and compares parameters, .grad, optimizer state and
the returned values after every call; between calls both copies get the same host reads and writes, so the
rules of where a tensor's values live (backends/numba_cuda/memory.py) are checked against eager code.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np

RTOL, ATOL = 1e-5, 1e-6


def _model(seed: int = 0):
    import tracegrad as tg
    from tracegrad import nn
    tg.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))


def _data(calls: int, seed: int = 1):
    import tracegrad as tg
    rng = np.random.default_rng(seed)
    return [(tg.tensor(rng.normal(size=(4, 3)).astype(np.float32)), tg.tensor(rng.integers(0, 2, 4)))
            for _ in range(calls)]


def _state(model, opt) -> list:
    """Copies of the values a step changes: parameters, .grad, optimizer state."""
    out = []
    for p in model.parameters():
        out += [p.detach().numpy().copy(), None if p.grad is None else p.grad.numpy().copy()]
        out += [v.numpy().copy() if hasattr(v, "numpy") else v for v in opt.state.get(p, {}).values()]
    return out


def _assert_same(eager: list, compiled: list, what: str) -> None:
    assert len(eager) == len(compiled), f"{what}: another structure"
    for k, (e, c) in enumerate(zip(eager, compiled)):
        if isinstance(e, np.ndarray):
            assert isinstance(c, np.ndarray) and c.dtype == e.dtype, f"{what}, entry {k}: {c!r} vs {e!r}"
            np.testing.assert_allclose(c, e, rtol=RTOL, atol=ATOL, err_msg=f"{what}, entry {k}")
        else:
            assert e == c, f"{what}, entry {k}: {e!r} vs {c!r}"


def _step_of(model, opt, loss_fn):
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _run_both(make_opt, calls: int = 6, between=None, loss_fn=None):
    """The step eagerly and compiled (backend="cuda") on copies of one model; compared after every call.
    ``between(model, opt, i)`` runs before call i on both copies. Returns the compiled step."""
    import tracegrad as tg
    from tracegrad import nn
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    eager_model = _model()
    compiled_model = copy.deepcopy(eager_model)
    eager_opt, compiled_opt = make_opt(eager_model), make_opt(compiled_model)
    eager_step = _step_of(eager_model, eager_opt, loss_fn)
    compiled_step = tg.compile(_step_of(compiled_model, compiled_opt, loss_fn), backend="cuda")
    for i, (x, y) in enumerate(_data(calls)):
        if between is not None:
            between(eager_model, eager_opt, i)
            between(compiled_model, compiled_opt, i)
        expected, got = eager_step(x, y), compiled_step(x, y)
        np.testing.assert_allclose(got.item(), expected.item(), rtol=RTOL, atol=ATOL, err_msg=f"loss of call {i}")
        _assert_same(_state(eager_model, eager_opt), _state(compiled_model, compiled_opt), f"call {i}")
    return compiled_step, compiled_model


def _device_resident(t) -> bool:
    """Whether the tensor's current values are on the device only (its host copy set aside)."""
    return "_device" in t.__dict__ and "_data" not in t.__dict__


def sgd_momentum_runs_on_the_gpu():
    from tracegrad import optim
    from tracegrad.backends.numba_cuda import Step
    step, _ = _run_both(lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    info = step.cache_info()
    assert (info.compiles, info.fallbacks, info.backend_fallbacks) == (1, 0, 0), info
    assert info.hits == 4, info  # 6 calls: one eager, one traced, four replays
    variant = next(iter(step._variants.values()))[0]
    assert variant.backend == "cuda" and isinstance(variant.execute, Step)
    assert variant.execute.launches > 0 and variant.execute.written_through == 0


def adam_keeps_parameters_state_and_grads_on_the_device():
    import tracegrad as tg
    from tracegrad import optim
    eager = _model()
    model = copy.deepcopy(eager)
    opt, eager_opt = optim.Adam(model.parameters(), lr=0.01), optim.Adam(eager.parameters(), lr=0.01)
    step, eager_step = (tg.compile(_step_of(model, opt, tg.nn.CrossEntropyLoss()), backend="cuda"),
                        _step_of(eager, eager_opt, tg.nn.CrossEntropyLoss()))
    data = _data(5)
    for x, y in data:
        step(x, y)
        eager_step(x, y)
    launches = next(iter(step._variants.values()))[0].execute.launches
    resident = [_device_resident(p) for p in model.parameters()]
    resident += [_device_resident(p.grad) for p in model.parameters()]
    resident += [_device_resident(v) for p in model.parameters() for v in opt.state[p].values() if isinstance(v, tg.Tensor)]
    assert all(resident), resident
    step(*data[0])
    eager_step(*data[0])
    assert next(iter(step._variants.values()))[0].execute.launches > launches  # the replay ran kernels
    _assert_same(_state(eager, eager_opt), _state(model, opt), "after the last call")  # each read copies down


def host_reads_and_writes_between_steps_are_seen():
    """Eager code reads and writes parameters, .grad and optimizer state between compiled steps."""
    import tracegrad as tg
    from tracegrad import nn, optim

    def between(model, opt, i):
        params = list(model.parameters())
        if i == 2:
            str(params[0])  # printing reads the values
            with tg.no_grad():
                params[0].mul_(0.5)  # an in-place host write
        if i == 3 and params[1].grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), 0.05)  # reads and writes every .grad on the host
        if i == 4:
            params[2].data = params[2].data * 2  # a new host buffer
            opt.state[params[0]]["momentum_buffer"].add_(1.0)
        if i == 5:
            model.load_state_dict({k: v * 0.9 for k, v in model.state_dict().items()})
    _run_both(lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=0.9), calls=8, between=between)


def a_held_view_of_a_parameter_sees_every_step():
    """A NumPy view of a parameter's buffer held across steps keeps it on the host, written through."""
    import tracegrad as tg
    from tracegrad import optim
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    weight = model[0].weight
    held = weight.detach().numpy()  # shares the parameter's memory
    step = tg.compile(_step_of(model, opt, tg.nn.CrossEntropyLoss()), backend="cuda")
    for x, y in _data(5):
        step(x, y)
        np.testing.assert_array_equal(held, weight.detach().numpy())
    assert next(iter(step._variants.values()))[0].execute.written_through > 0


def a_float_argument_and_returned_values():
    """A float argument that changes every call is a scalar input; several returned tensors and a float."""
    import tracegrad as tg
    model, eager = _model(), _model()

    def make(m):
        def step(x, y, lr):
            out = m(x)
            loss = tg.nn.functional.cross_entropy(out, y)
            loss.backward()
            with tg.no_grad():
                for p in m.parameters():
                    p.sub_(lr * p.grad)
                    p.grad = None
            return loss, out.argmax(1), lr * 2
        return step
    step, eager_step = tg.compile(make(model), backend="cuda"), make(eager)
    for i, (x, y) in enumerate(_data(6)):
        lr = 0.1 / (i + 1)
        (loss, arg, doubled), (e_loss, e_arg, e_doubled) = step(x, y, lr), eager_step(x, y, lr)
        np.testing.assert_allclose(loss.item(), e_loss.item(), rtol=RTOL)
        np.testing.assert_array_equal(arg.numpy(), e_arg.numpy())
        assert type(doubled) is float and doubled == e_doubled
    assert step.cache_info().hits == 3, step.cache_info()
    for p, e in zip(model.parameters(), eager.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), e.detach().numpy(), rtol=RTOL, atol=ATOL)


def an_op_without_a_cuda_lowering_runs_on_the_cpu_backend():
    import tracegrad as tg
    from tracegrad.compiler import CompileWarning
    from tracegrad.primitives import REGISTRY
    from tracegrad.primitives.base import Primitive, Surface, elementwise_shape, same_dtype

    name = "cpu_only_twice"
    Primitive(name, "elementwise", lambda x: x * 2, shape_rule=elementwise_shape, dtype_rule=same_dtype,
              surface=Surface("Twice x, spelled for the numba backend only."), lowerings={"numba": "{0} * {T}(2)"})
    try:
        def step(x):
            return tg.cpu_only_twice(x * 3).sum()
        compiled = tg.compile(step, backend="cuda")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [compiled(tg.ones(3) * i).item() for i in range(4)]
        assert results == [18.0 * i for i in range(4)], results
        messages = [str(w.message) for w in caught if issubclass(w.category, CompileWarning)]
        assert any("cuda can't compile" in m and name in m and "numba backend runs" in m for m in messages), messages
        info = compiled.cache_info()
        assert (info.fallbacks, info.backend_fallbacks) == (0, 1), info
        assert next(iter(compiled._variants.values()))[0].backend == "numba"
    finally:
        del REGISTRY[name]
        for namespace in (tg, tg.ops, tg.Tensor):
            delattr(namespace, name)
        delattr(tg.Tensor, name + "_")


def benchmark_steps_w1_to_w4():
    """The benchmark workloads' steps (benchmarks/), on problems small enough for the simulator."""
    import tracegrad as tg
    from benchmarks import actor_critic, columns, elementwise, mlp
    elementwise.SHAPE = (4, 6)  # the module's sizes, read when a problem is made and a step is built
    actor_critic.BATCH, actor_critic.OBS, actor_critic.ACTION, actor_critic.HIDDEN = 4, 3, 2, 5
    problems = {"W1": (mlp, mlp.make_problem(4, (5, 6, 6, 3), "sgd", lr=0.01)),
                "W2": (mlp, mlp.make_problem(4, (7, 6, 3), "adam", lr=1e-3)),
                "W3": (elementwise, elementwise.make_problem()), "W4": (actor_critic, actor_critic.make_problem())}
    for name, (module, problem) in problems.items():
        eager = module.build_pytorch_style(tg, problem)
        compiled = columns.tracegrad_compiled(module.build_pytorch_style, "cuda")(problem)  # runs until compiled
        for call in range(3):
            np.testing.assert_allclose(compiled.step().item(), eager.step().item(), rtol=RTOL, atol=ATOL,
                                       err_msg=f"{name}, loss of call {call}")
            for k, (c, e) in enumerate(zip(compiled.weights(), eager.weights())):
                np.testing.assert_allclose(c, e, rtol=RTOL, atol=ATOL, err_msg=f"{name}, call {call}, weight {k}")
        info = compiled.step.cache_info()
        assert (info.fallbacks, info.backend_fallbacks) == (0, 0), (name, info)
        assert next(iter(compiled.step._variants.values()))[0].backend == "cuda", name


def the_digits_examples_training_step():
    """examples/mlp_digits.py's train_step on a batch of the digits data (a smaller model: the simulator is slow)."""
    import runpy

    import tracegrad as tg
    from tracegrad import nn, optim
    example = runpy.run_path("examples/mlp_digits.py")
    x_train, _, y_train, _ = example["load_data"]()
    runs = []
    for backend in ("eager", "cuda"):
        tg.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 10))
        opt, loss_fn = optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss()
        step = tg.compile(example["train_step"], backend=backend)
        losses = [step(model, opt, loss_fn, x_train[8 * k:8 * k + 8], y_train[8 * k:8 * k + 8]).item()
                  for k in range(5)]
        runs.append((losses, [p.detach().numpy().copy() for p in model.parameters()]))
    (eager_losses, eager_weights), (losses, weights) = runs
    np.testing.assert_allclose(losses, eager_losses, rtol=RTOL, atol=ATOL)
    for c, e in zip(weights, eager_weights):
        np.testing.assert_allclose(c, e, rtol=RTOL, atol=ATOL)
    assert step.cache_info().hits == 3, step.cache_info()


def a_small_cnn_step():
    """Convolution, pooling and their gradients (window-table gathers and scatters, matrix products) on CUDA."""
    import tracegrad as tg
    from tracegrad import nn, optim

    def cnn():
        tg.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 3, padding="same"),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    rng = np.random.default_rng(2)
    data = [(tg.tensor(rng.normal(size=(2, 1, 4, 4)).astype(np.float32)), tg.tensor(rng.integers(0, 2, 2)))
            for _ in range(4)]
    runs = []
    for backend in ("eager", "cuda"):
        model = cnn()
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        step = tg.compile(_step_of(model, opt, nn.CrossEntropyLoss()), backend=backend)
        runs.append(([step(x, y).item() for x, y in data], [p.detach().numpy().copy() for p in model.parameters()]))
    (eager_losses, eager_weights), (losses, weights) = runs
    np.testing.assert_allclose(losses, eager_losses, rtol=RTOL, atol=ATOL)
    for c, e in zip(weights, eager_weights):
        np.testing.assert_allclose(c, e, rtol=RTOL, atol=ATOL)
    info = step.cache_info()
    assert (info.hits, info.fallbacks, info.backend_fallbacks) == (2, 0, 0), info


def the_dump_command_shows_the_cuda_kernels():
    """`tracegrad dump --stage kernel --backend cuda` prints the generated kernels and their driver."""
    import os
    import subprocess
    import sys
    import tempfile
    script = ("import tracegrad as torch\nw = torch.ones(3, requires_grad=True)\n@torch.compile\n"
              "def step(x):\n    loss = (x * w).relu().sum()\n    loss.backward()\n    return loss\n"
              "for _ in range(3):\n    step(torch.ones(3))\n")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "step.py")
        with open(path, "w") as f:
            f.write(script)
        done = subprocess.run([sys.executable, "-m", "tracegrad", "dump", "--stage", "kernel", "--backend", "cuda", path],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "@cuda.jit" in done.stdout and "rt.launch(P, k0" in done.stdout and "mul, " in done.stdout, done.stdout


def is_available_and_synchronize():
    import tracegrad as tg
    assert tg.cuda.is_available() and tg.cuda.device_count() >= 1
    tg.cuda.synchronize()


CASES = {f.__name__: f for f in (sgd_momentum_runs_on_the_gpu, adam_keeps_parameters_state_and_grads_on_the_device,
                                 host_reads_and_writes_between_steps_are_seen, a_held_view_of_a_parameter_sees_every_step,
                                 a_float_argument_and_returned_values, an_op_without_a_cuda_lowering_runs_on_the_cpu_backend,
                                 benchmark_steps_w1_to_w4, the_digits_examples_training_step,
                                 a_small_cnn_step, the_dump_command_shows_the_cuda_kernels,
                                 is_available_and_synchronize)}
