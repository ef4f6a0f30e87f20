"""save/load (round trips, no code execution, map_location, errors), Generator, __format__, printing, grad_fn names."""
from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn, optim


def _round_trip(obj, **load_kwargs):
    buffer = io.BytesIO()
    tg.save(obj, buffer)
    buffer.seek(0)
    return tg.load(buffer, **load_kwargs)


def test_save_load_keeps_values_types_and_flags(tmp_path):
    x = tg.arange(12.0).reshape(3, 4)
    obj = {"x": x, "i": tg.tensor([1, 2], dtype=tg.int32), "b": tg.tensor(True), "empty": tg.zeros(0, 3),
           "p": nn.Parameter(tg.randn(2)), "g": tg.ones(2, requires_grad=True), "n": (1, 2.5, None, "s", False),
           7: [tg.tensor(1.5, dtype=tg.float64)], "h": tg.tensor([1.5], dtype=tg.float16), "nan": float("nan"),
           "dtype": tg.float64, "np": np.float32(0.5)}
    path = tmp_path / "obj.pt"
    tg.save(obj, str(path))
    back = tg.load(path)
    assert list(back) == list(obj)
    for key in ("x", "i", "b", "empty", "p", "g", "h"):
        assert back[key].dtype == obj[key].dtype and back[key].shape == obj[key].shape
        assert back[key].requires_grad == obj[key].requires_grad and back[key].is_leaf
        assert np.array_equal(back[key].detach().numpy(), obj[key].detach().numpy())
    assert type(back["p"]) is nn.Parameter and type(back["x"]) is tg.Tensor
    assert back["n"] == (1, 2.5, None, "s", False) and type(back["n"]) is tuple
    assert back[7][0].dtype == tg.float64 and back["dtype"] is tg.float64 and np.isnan(back["nan"])
    assert type(back["np"]) is np.float32 and back["np"] == 0.5


def test_shared_memory_is_shared_again():
    x = tg.arange(12.0).reshape(3, 4)
    back = _round_trip({"x": x, "view": x[1:, ::2], "t": x.t(), "again": x})
    assert back["again"] is back["x"]
    back["x"][1, 0] = 100.0
    assert back["view"][0, 0].item() == 100.0 and back["t"][0, 1].item() == 100.0


def _model_and_optimizer():
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    return model, optim.Adam(model.parameters(), lr=0.01)


def _train(model, opt, batches, compiled: bool):
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    run = tg.compile(step) if compiled else step
    return [run(x, y).item() for x, y in batches]


@pytest.mark.parametrize("compiled", [False, True])
def test_resumed_training_is_identical(compiled):
    rng = np.random.default_rng(0)
    batches = [(tg.tensor(rng.standard_normal((6, 4)).astype(np.float32)), tg.tensor(rng.integers(0, 3, 6)))
               for _ in range(8)]
    model, opt = _model_and_optimizer()
    _train(model, opt, batches[:4], compiled)
    saved = _round_trip({"model": model.state_dict(), "opt": opt.state_dict()})
    expected = _train(model, opt, batches[4:], compiled)
    model2, opt2 = _model_and_optimizer()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    assert _train(model2, opt2, batches[4:], compiled) == expected
    for a, b in zip(model.parameters(), model2.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())


def test_map_location_forms():
    x = tg.tensor([1.0, 2.0])
    for where in ("cpu", tg.device("cpu"), {"cuda:0": "cpu"}, {"cpu": "cpu"}, None):
        assert _round_trip(x, map_location=where).tolist() == [1.0, 2.0]
    seen = []
    assert _round_trip([x], map_location=lambda t, loc: seen.append(loc))[0].tolist() == [1.0, 2.0]
    assert seen == ["cpu"]
    assert _round_trip(x, map_location=lambda t, loc: t * 2).tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="host memory"):
        _round_trip(x, map_location="cuda")
    with pytest.raises(RuntimeError, match="host memory"):
        _round_trip(x, map_location={"cpu": "cuda:0"})


def test_pickles_and_foreign_zips_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(RuntimeError, match="pickle.*tracegrad.save writes"):
        tg.load(path)
    with zipfile.ZipFile(path, "w") as archive:  # the layout of PyTorch's own checkpoints
        archive.writestr("archive/data.pkl", pickle.dumps({"w": [1.0]}))
    with pytest.raises(RuntimeError, match="PyTorch checkpoint"):
        tg.load(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="not a zip archive"):
        tg.load(path)


def _crafted(description) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tracegrad.json", json.dumps(description))
        data = io.BytesIO()
        np.save(data, np.arange(4, dtype=np.float32))
        archive.writestr("storages/0.npy", data.getvalue())
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("entry", [
    {"object": "os.system", "args": ["echo hi"]},
    {"callable": "builtins.eval"},
    {"set": [1, 2]},
    {"dict": [[1]]},
])
def test_crafted_descriptions_naming_other_objects_are_refused(entry):
    with pytest.raises(RuntimeError, match="refusing an entry"):
        tg.load(_crafted({"format": "tracegrad.save", "version": 1, "object": {"list": [entry]}}))


@pytest.mark.parametrize("spec", [
    {"storage": 0, "offset": 2, "shape": [4], "strides": [1], "dtype": "float32", "requires_grad": False,
     "parameter": False},  # reaches past the end of the block
    {"storage": 0, "offset": 0, "shape": [2], "strides": [-1], "dtype": "float32", "requires_grad": False,
     "parameter": False},  # reaches before its start
    {"storage": 0, "offset": 0, "shape": [4], "strides": [1], "dtype": "object", "requires_grad": False,
     "parameter": False},
    {"storage": 0, "offset": 0, "shape": [4], "strides": [1], "dtype": "int64", "requires_grad": False,
     "parameter": False},  # not the block's dtype
])
def test_damaged_tensor_entries_are_refused(spec):
    with pytest.raises(RuntimeError, match="damaged"):
        tg.load(_crafted({"format": "tracegrad.save", "version": 1, "object": {"tensor": spec}}))


def test_save_refuses_other_objects():
    with pytest.raises(TypeError, match="can't store a builtins.set"):
        tg.save({"s": {1}}, io.BytesIO())
    with pytest.raises(TypeError, match="path or a binary file"):
        tg.save(tg.zeros(1), 3)


def test_generator_streams():
    g = tg.Generator().manual_seed(3)
    first = [tg.rand(3, generator=g), tg.randn(2, 2, generator=g), tg.randint(0, 9, (4,), generator=g),
             tg.randperm(5, generator=g), tg.normal(0.0, 1.0, (3,), generator=g),
             tg.bernoulli(tg.full((4,), 0.5), generator=g), tg.multinomial(tg.ones(4), 2, generator=g),
             tg.empty(3).uniform_(generator=g), tg.empty(3).normal_(generator=g)]
    g.manual_seed(3)
    tg.manual_seed(123)  # the global generator is independent of g
    tg.rand(5)
    second = [tg.rand(3, generator=g), tg.randn(2, 2, generator=g), tg.randint(0, 9, (4,), generator=g),
              tg.randperm(5, generator=g), tg.normal(0.0, 1.0, (3,), generator=g),
              tg.bernoulli(tg.full((4,), 0.5), generator=g), tg.multinomial(tg.ones(4), 2, generator=g),
              tg.empty(3).uniform_(generator=g), tg.empty(3).normal_(generator=g)]
    for a, b in zip(first, second):
        assert tg.equal(a, b)
    assert g.initial_seed() == 3 and tg.initial_seed() == 123
    state = g.get_state()
    x = tg.rand(4, generator=g)
    assert g.set_state(state) is g and tg.equal(tg.rand(4, generator=g), x)
    with pytest.raises(TypeError, match="tracegrad.Generator"):
        tg.rand(2, generator=np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="get_state"):
        g.set_state(tg.tensor([1, 2, 3], dtype=tg.uint8))


def test_data_loader_and_random_split_take_a_generator():
    from tracegrad.utils.data import DataLoader, TensorDataset, random_split
    data = TensorDataset(tg.arange(10))

    def order(seed):
        loader = DataLoader(data, batch_size=4, shuffle=True, generator=tg.Generator().manual_seed(seed))
        return [b[0].tolist() for b in loader]
    assert order(1) == order(1) and order(1) != order(2)
    parts = [random_split(data, [3, 7], generator=tg.Generator().manual_seed(5)) for _ in range(2)]
    assert [list(p.indices) for p in parts[0]] == [list(p.indices) for p in parts[1]]


def test_format_of_tensors():
    assert f"{tg.tensor(1.23456):.4f}" == "1.2346" and f"{tg.tensor(3):d}" == "3"
    assert f"{tg.tensor([1.0, 2.0])}" == str(tg.tensor([1.0, 2.0]))
    with pytest.raises(TypeError):
        f"{tg.tensor([1.0, 2.0]):.4f}"


def test_print_options_round_trip():
    x = tg.tensor([1.23456, 2.5])
    try:
        tg.set_printoptions(precision=2)
        assert repr(x) == "tensor([1.23, 2.50])"
        tg.set_printoptions(sci_mode=True)
        assert repr(x) == "tensor([1.23e+00, 2.50e+00])"
        with pytest.raises(ValueError, match="profile"):
            tg.set_printoptions(profile="long")
    finally:
        tg.set_printoptions(profile="default")
    assert repr(x) == "tensor([1.2346, 2.5000])"


def test_grad_fn_classes():
    from tracegrad.autograd.engine import PrimitiveNode
    x = tg.randn(3, requires_grad=True)
    y = (x * 2).sum()
    assert type(y.grad_fn).__name__ == "SumBackward0" and isinstance(y.grad_fn, PrimitiveNode)
    assert type(y.grad_fn) is type((x + 1).sum().grad_fn)  # one class per name
    mul = y.grad_fn.next_functions[0][0]
    assert type(mul).__name__ == "MulBackward0" and mul.name() == "MulBackward0"
    assert type(mul.next_functions[0][0]).__name__ == "AccumulateGrad"
    assert repr(y) .endswith("grad_fn=<SumBackward0>)")


def test_device_line_runs_without_a_gpu():
    device = tg.device("cuda" if tg.cuda.is_available() else "cpu")
    assert tg.zeros(2).to(device).tolist() == [0.0, 0.0]
