"""Differential test: random training programs, compiled == eager after every call.

Hypothesis draws a *program*: a small MLP (``nn.Sequential`` or a user ``nn.Module`` whose ``forward``
reads Python attributes), a loss, an optimizer (SGD with momentum / Nesterov / weight decay, Adam,
AdamW; one group, two groups, or a subset of the parameters with the rest added later), a step
function (plain, gradient accumulation over two micro-batches, a scale read from a global, a closure
cell, a dict entry, a config attribute, a module attribute or an argument, an ``lr`` argument written
into the param groups and used in Python arithmetic, a comparison, ``math.exp``, ``type()`` or a stored
value (a float argument that changes is traced as a graph input), gradient clipping, several return shapes, several ``zero_grad`` placements)
and a sequence of calls, each preceded by up to two *events* (Python values changed, parameters or
submodules replaced, ``requires_grad`` toggled, ``.grad`` set or cleared outside, ``zero_grad``,
hyperparameters changed, ``add_param_group``, a scheduler step, optimizer state reloaded or cleared,
new or reused inputs, another batch size, train/eval).

Every program is built twice from the same source and seed; one copy's step runs eagerly, the other's
through ``tracegrad.compile`` with the ``backend`` fixture's backend. After every call the returned
values, every parameter, every ``.grad`` (``None``-ness included), the optimizer state and the param
groups' hyperparameters must agree (float32 tolerance); an exception must happen in both or neither,
with the same class. Falling back to eager (a ``CompileWarning``) is allowed, a wrong number is not;
but the event-free programs must mostly replay compiled code, so the test can't pass by falling back.

Budget: ``TRACEGRAD_FUZZ_EXAMPLES`` sets the number of programs per backend (CI: 25 on the interpreter,
10 on Numba). A failure prints the program's source and events (Hypothesis prints the example; its
database replays it on the next run).

Collect every mismatch of a long run instead of stopping at the first, each reduced to a small program:

    PYTHONPATH=. python tests/test_compile_differential.py --backend interpreter --examples 2000
"""
from __future__ import annotations

import contextlib
import dataclasses
import linecache
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import tracegrad as tg
from tracegrad.compiler import CompileWarning

IN, HIDDEN, OUT = 4, 8, 3
SCALES = (0.5, 1.0, 2.0, 2)  # 2: an int where a float was read
LRS = (0.1, 0.05, 0.01)


def _budget(default: int) -> int:
    return int(os.environ.get("TRACEGRAD_FUZZ_EXAMPLES", default))


# ---- programs ---------------------------------------------------------------------------------------

# Events whose statement only needs the event's own values: {0}, {1}... are those values.
_SIMPLE_EVENTS = {
    "global": "GSCALE = {0!r}",
    "closure": "set_cscale({0!r})",
    "dict": "table['scale'] = {0!r}",
    "attr": "cfg.scale = {0!r}",
    "del_attr": "cfg.__dict__.pop('scale', None)",
    "class_attr": "Config.scale = {0!r}",
    "rebind_cfg": "cfg = Config(); cfg.scale = {0!r}",
    "rebind_table": "table = {{'scale': {0!r}}}",
    "dtype": "model.to(tg.{0})",
    "default_dtype": "tg.set_default_dtype(tg.{0})",
    "replace_state": "for s in opt.state.values():\n    for k in list(s):\n        s[k] = s[k] * 0.5",
    "pop_param": "if len(opt.param_groups[0]['params']) > 1: opt.param_groups[0]['params'].pop()",
    "module_attr": "model.scale = {0!r}",
    "opt_zero_grad": "opt.zero_grad(set_to_none={0})",
    "model_zero_grad": "model.zero_grad()",
}


@dataclasses.dataclass(frozen=True)
class Program:
    """A training program: how its model, optimizer and step are built, and what happens between calls."""

    seed: int
    model: str              # "seq" (nn.Sequential) | "net" (a user Module reading self.acts, self.scale, self.training)
    acts: tuple             # activation after each hidden layer: "relu" | "tanh" (len = depth - 1)
    loss: str               # "mse" | "ce"
    opt: str                # "sgd" | "adam" | "adamw"
    opt_args: tuple         # (name, value) keyword arguments
    groups: str             # "one" | "two" (the last layer in a group of its own) | "subset" (the last layer left out)
    scale: str              # where the step's loss scale comes from: none|global|closure|dict|attr|module|arg
    accumulate: bool        # two micro-batches, backward on each
    lr_arg: bool            # step(x, y, lr) writes lr into every param group
    lr_use: str             # and also: "none" | "tensor" (loss * (1 + lr)) | "math" (math.exp) | "branch" (lr > 0.07)
                            # | "type" (type(lr) is float) | "store" (cfg.lr_seen = lr * 2 - 0.01)
    lr_decay: bool          # lr shrinks at every call from the first (an lr_decay event starts it later)
    clip: bool              # clip_grad_norm_ before opt.step()
    ret: str                # "loss" | "tuple" | "none" | "dict" | "grad" (a parameter's .grad)
    zero: str               # "start" | "start_keep" (set_to_none=False) | "end" | "never" | "model"
    capture: str            # "closure" (model, opt are closure cells) | "global"
    side: str               # a Python side effect: "none" | "count" (cfg.count += 1) | "item" (cfg.last = loss.item())
                            # | "store_tensor" (cfg.last = loss.detach())
    branch: bool            # a branch on a tensor value (`if out.mean() > 0:`)
    class_scale: bool       # cfg.scale is the class attribute Config.scale (no instance attribute)
    calls: tuple            # per call: a tuple of events applied to both copies before the call

    @property
    def depth(self) -> int:
        return len(self.acts) + 1

    @property
    def dims(self) -> list:
        return [IN] + [HIDDEN] * (self.depth - 1) + [OUT]

    def linear(self, k: int) -> str:
        """The expression naming the k-th Linear layer."""
        k %= self.depth
        return f"model[{2 * k}]" if self.model == "seq" else f"model.layers[{k}]"

    def split(self) -> tuple:
        """Expressions for the two parts of the parameters (groups 'two' and 'subset')."""
        if self.depth == 1:
            return f"[{self.linear(0)}.weight]", f"[{self.linear(0)}.bias]"
        first = " + ".join(f"list({self.linear(k)}.parameters())" for k in range(self.depth - 1))
        return first, f"list({self.linear(self.depth - 1)}.parameters())"

    def setup_source(self) -> str:
        """Module source that builds the model, the optimizer and ``step``."""
        lines = [
            "import math",
            "import tracegrad as tg",
            "from tracegrad import nn, optim",
            "import tracegrad.nn.functional as F",
            "",
            "",
            "class Net(nn.Module):",
            "    def __init__(self, dims, acts):",
            "        super().__init__()",
            "        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:])])",
            "        self.acts = list(acts)",
            "        self.scale = 1.0",
            "",
            "    def forward(self, x):",
            "        n = len(self.layers)",
            "        for i, layer in enumerate(self.layers):",
            "            x = layer(x)",
            "            if i < n - 1:",
            "                x = x.relu() if self.acts[i] == 'relu' else x.tanh()",
            "        if self.training:",
            "            x = x * self.scale",
            "        return x",
            "",
            "",
            "class Config:",
            f"    scale = {1.0 if self.class_scale else 0.0}",
            "    count = 0",
            "    last = None",
            "    lr_seen = None",
            "",
            "",
            f"tg.manual_seed({self.seed})",
            self.build_source(),
            "GSCALE = 1.0",
            "table = {'scale': 1.0}",
            "cfg = Config()",
            "" if self.class_scale else "cfg.scale = 1.0",
            "",
            "",
        ]
        lines += self._step_source()
        return "\n".join(lines) + "\n"

    def build_source(self) -> str:
        """The statements that make the model and the optimizer."""
        opt_class = {"sgd": "optim.SGD", "adam": "optim.Adam", "adamw": "optim.AdamW"}[self.opt]
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.opt_args)
        first, last = self.split()
        if self.groups == "one":
            params = "model.parameters()"
        elif self.groups == "two":
            params = f"[{{'params': {first}}}, {{'params': {last}, 'lr': 0.02}}]"
        else:
            params = first
        if self.model == "seq":
            layers = []
            for k in range(self.depth):
                layers.append(f"nn.Linear({self.dims[k]}, {self.dims[k + 1]})")
                if k < self.depth - 1:
                    layers.append("nn.ReLU()" if self.acts[k] == "relu" else "nn.Tanh()")
            model = f"nn.Sequential({', '.join(layers)})"
        else:
            model = f"Net({self.dims}, {list(self.acts)})"
        return f"model = {model}\nopt = {opt_class}({params}, {kwargs})"

    def _step_source(self) -> list:
        closure = self.capture == "closure"
        args = ["x", "y"] + (["lr"] if self.lr_arg else []) + (["scale"] if self.scale == "arg" else [])
        loss = "F.mse_loss" if self.loss == "mse" else "F.cross_entropy"
        factor = {"none": "", "global": " * GSCALE", "closure": " * cscale", "dict": " * table['scale']",
                  "attr": " * cfg.scale", "module": "", "arg": " * scale"}[self.scale]
        if self.lr_arg:
            factor += {"none": "", "store": "", "tensor": " * (1 + lr)", "math": " * math.exp(-lr)",
                       "branch": " * (0.5 if lr > 0.07 else 1.0)", "type": " * (2.0 if type(lr) is float else 1.0)"
                       }[self.lr_use]
        body = []
        if self.zero == "start":
            body.append("opt.zero_grad()")
        elif self.zero == "start_keep":
            body.append("opt.zero_grad(set_to_none=False)")
        elif self.zero == "model":
            body.append("model.zero_grad()")
        if self.accumulate:
            body += ["half = x.shape[0] // 2",
                     "loss = 0.0",
                     "for k in range(2):",
                     "    sl = slice(k * half, (k + 1) * half)",
                     "    out = model(x[sl])",
                     f"    part = {loss}(out, y[sl]){factor} / 2",
                     "    part.backward()",
                     "    loss = loss + part.detach()"]
        else:
            body += ["out = model(x)",
                     f"loss = {loss}(out, y){factor}"]
            if self.branch:
                body += ["if out.mean() > 0:", "    loss = loss * 0.5"]
            body += ["loss.backward()"]
        if self.clip:
            body.append("nn.utils.clip_grad_norm_(model.parameters(), 1.0)")
        if self.lr_arg:
            body += ["for g in opt.param_groups:", "    g['lr'] = lr"]
            if self.lr_use == "store":
                body.append("cfg.lr_seen = lr * 2 - 0.01")
        body.append("opt.step()")
        if self.zero == "end":
            body.append("opt.zero_grad()")
        body += {"none": [], "count": ["cfg.count = cfg.count + 1"], "item": ["cfg.last = loss.item()"],
                 "store_tensor": ["cfg.last = loss.detach()"]}[self.side]
        body.append({"loss": "return loss", "tuple": "return loss, out.detach().sum(), out",
                     "none": "return None", "dict": "return {'loss': loss, 'n': x.shape[0]}",
                     "grad": f"return loss, {self.linear(0)}.weight.grad"}[self.ret])
        lines = [f"def make_step({'model, opt' if closure else ''}):",
                 "    cscale = 1.0",
                 "",
                 f"    def step({', '.join(args)}):"]
        lines += ["        " + line for line in body]
        lines += ["",
                  "    def set_cscale(value):",
                  "        nonlocal cscale",
                  "        cscale = value",
                  "",
                  "    return step, set_cscale",
                  "",
                  "",
                  f"step, set_cscale = make_step({'model, opt' if closure else ''})"]
        return lines

    def event_source(self, event: tuple) -> str:
        """The statement(s) an event runs in a program's namespace ('' for events the harness handles)."""
        kind, *a = event
        if kind in HARNESS_EVENTS:
            return ""
        if kind in _SIMPLE_EVENTS:
            return _SIMPLE_EVENTS[kind].format(*a)
        if kind == "rebuild":
            return f"tg.manual_seed({a[0]})\n{self.build_source()}"
        if kind == "tie":
            return f"{self.linear(1)}.bias = {self.linear(0)}.bias" if self.depth == 3 else "pass"
        if kind == "act":
            k, name = a
            if self.depth == 1:
                return "pass"
            k %= self.depth - 1
            if self.model == "net":
                return f"model.acts[{k}] = {name!r}"
            return f"model[{2 * k + 1}] = nn.{'ReLU' if name == 'relu' else 'Tanh'}()"
        layer = self.linear(a[0]) if a and isinstance(a[0], int) else None
        if kind == "replace_param":
            k, which, seed = a
            shape = (self.dims[k % self.depth + 1], self.dims[k % self.depth]) if which == "weight" else \
                (self.dims[k % self.depth + 1],)
            return f"tg.manual_seed({seed}); {layer}.{which} = nn.Parameter(tg.randn{shape} * 0.3)"
        if kind == "replace_module":
            k, seed = a
            k %= self.depth
            return f"tg.manual_seed({seed}); {layer} = nn.Linear({self.dims[k]}, {self.dims[k + 1]})"
        if kind == "requires_grad":
            _, which, flag = a
            return f"{layer}.requires_grad_({flag})" if which == "layer" else f"{layer}.{which}.requires_grad_({flag})"
        if kind == "set_grad":
            _, which, value = a
            if value is None:
                return f"{layer}.{which}.grad = None"
            return f"{layer}.{which}.grad = tg.full_like({layer}.{which}, {value!r})"
        if kind == "tensor_hook":
            _, which = a
            return f"{layer}.{which}.register_hook(lambda g: g * 0.5)"
        if kind == "module_hook":
            return f"{layer}.register_forward_hook(lambda m, args, out: out * 0.5)"
        if kind == "patch_forward":
            return f"_m = {layer}; _m.forward = lambda x, m=_m: F.linear(x, m.weight, m.bias) * 0.5"
        if kind == "scale_grad":
            _, which = a
            return f"if {layer}.{which}.grad is not None: {layer}.{which}.grad.mul_(0.5)"
        if kind == "hyper":
            g, key, value = a
            return f"opt.param_groups[{g} % len(opt.param_groups)][{key!r}] = {value!r}"
        if kind == "add_group":
            if self.groups == "subset":
                return f"opt.add_param_group({{'params': {self.split()[1]}, 'lr': 0.02}})"
            return f"tg.manual_seed({a[0]}); opt.add_param_group({{'params': [nn.Parameter(tg.randn(3) * 0.1)]}})"
        if kind == "sched":
            return "sched = globals().get('sched') or optim.lr_scheduler.ExponentialLR(opt, 0.5); sched.step()"
        if kind == "reload_opt":
            return "opt.load_state_dict(opt.state_dict())"
        if kind == "clear_state":
            return "opt.state.clear()"
        if kind == "inplace_param":
            return f"with tg.no_grad(): {layer}.weight.mul_(0.5)"
        if kind == "data_assign":
            k, seed = a
            k %= self.depth
            return f"tg.manual_seed({seed}); {layer}.weight.data = tg.randn({self.dims[k + 1]}, {self.dims[k]}) * 0.3"
        if kind == "train":
            flag, whole = a
            return f"model.train({flag})" if whole else f"{self.linear(0)}.train({flag})"
        raise ValueError(f"unknown event {event}")

    def describe(self) -> str:
        """The program as text: its source, then each call with the events before it."""
        lines = [self.setup_source(), "# calls (events before each; harness events in brackets):"]
        for i, events in enumerate(self.calls):
            shown = [self.event_source(e) or f"[{e}]" for e in events]
            lines.append(f"# call {i}: " + ("; ".join(shown) if shown else "-"))
        return "\n".join(lines)


OPT_ARGS = {
    "sgd": st.fixed_dictionaries({"lr": st.sampled_from(LRS), "momentum": st.sampled_from([0.0, 0.9]),
                                  "weight_decay": st.sampled_from([0.0, 0.01]), "nesterov": st.booleans()}),
    "adam": st.fixed_dictionaries({"lr": st.sampled_from([0.01, 0.001]),
                                   "betas": st.sampled_from([(0.9, 0.999), (0.8, 0.99)]),
                                   "weight_decay": st.sampled_from([0.0, 0.01]), "amsgrad": st.booleans()}),
    "adamw": st.fixed_dictionaries({"lr": st.sampled_from([0.01, 0.001]),
                                    "weight_decay": st.sampled_from([0.01, 0.1]), "amsgrad": st.booleans()}),
}
HYPER = {
    "sgd": [("lr", v) for v in LRS] + [("momentum", v) for v in (0.0, 0.5, 0.9)] +
           [("weight_decay", v) for v in (0.0, 0.01)] + [("nesterov", v) for v in (False, True)] +
           [("dampening", 0.1), ("dampening", 0.0), ("maximize", True), ("maximize", False)],
    "adam": [("lr", v) for v in (0.01, 0.001, 0.05)] + [("betas", v) for v in ((0.9, 0.999), (0.8, 0.99), (0.5, 0.9))] +
            [("weight_decay", v) for v in (0.0, 0.01)] + [("eps", 1e-6), ("eps", 1e-8), ("maximize", True),
                                                         ("maximize", False)],
}
HYPER["adamw"] = HYPER["adam"]
WHICH = st.sampled_from(["weight", "bias"])
HARNESS_EVENTS = ("inputs", "x_grad", "batch", "lr_arg", "lr_decay", "scale_arg", "no_grad_call",
                  "inference_call", "eager_call")
LAYER = st.integers(0, 2)
SEEDS = st.integers(0, 3)  # few seeds: replaced weights repeat, so do Numba kernels


def events(opt: str, exclude: frozenset = frozenset()) -> st.SearchStrategy:
    value = st.sampled_from(SCALES)
    return _events(opt, value).filter(lambda e: e[0] not in exclude) if exclude else _events(opt, value)


def _events(opt: str, value) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.sampled_from(["global", "closure", "dict", "attr", "module_attr"]), value),
        st.tuples(st.just("act"), LAYER, st.sampled_from(["relu", "tanh"])),
        st.tuples(st.just("replace_param"), LAYER, WHICH, SEEDS),
        st.tuples(st.just("replace_module"), LAYER, SEEDS),
        st.tuples(st.just("requires_grad"), LAYER, st.sampled_from(["weight", "bias", "layer"]), st.booleans()),
        st.tuples(st.just("set_grad"), LAYER, WHICH, st.sampled_from([None, 0.0, 0.1])),
        st.tuples(st.just("scale_grad"), LAYER, WHICH),
        st.tuples(st.just("opt_zero_grad"), st.booleans()),
        st.tuples(st.just("model_zero_grad")),
        st.builds(lambda g, kv: ("hyper", g, *kv), st.integers(0, 1), st.sampled_from(HYPER[opt])),
        st.tuples(st.just("add_group"), SEEDS),
        st.tuples(st.sampled_from(["sched", "reload_opt", "clear_state"])),
        st.tuples(st.just("inplace_param"), LAYER),
        st.tuples(st.just("data_assign"), LAYER, SEEDS),
        st.tuples(st.just("train"), st.booleans(), st.booleans()),
        st.tuples(st.just("inputs"), st.sampled_from(["fresh", "reuse"])),
        st.tuples(st.just("x_grad"), st.booleans()),
        st.tuples(st.just("batch"), st.sampled_from([3, 4, 5, 6])),  # 3+ sizes in a program: generic kernels reused
        st.tuples(st.just("lr_arg"), st.sampled_from(LRS)),
        st.tuples(st.just("lr_decay")),  # from now on lr shrinks at every call
        st.tuples(st.just("scale_arg"), value),
        st.tuples(st.sampled_from(["rebind_cfg", "rebind_table", "class_attr"]), value),
        st.tuples(st.just("del_attr")),
        st.tuples(st.just("rebuild"), SEEDS),
        st.tuples(st.just("dtype"), st.sampled_from(["float64", "float32"])),
        st.tuples(st.sampled_from(["pop_param", "no_grad_call", "inference_call", "eager_call", "tie",
                                   "replace_state"])),
        st.tuples(st.just("default_dtype"), st.sampled_from(["float64", "float32"])),
        st.tuples(st.just("tensor_hook"), LAYER, WHICH),
        st.tuples(st.sampled_from(["module_hook", "patch_forward"]), LAYER),
    )


@st.composite
def programs(draw, exclude: frozenset = frozenset()) -> Program:
    """A random program; ``exclude`` names event kinds and boolean features (``lr_arg``...) to leave out."""
    model = draw(st.sampled_from(["seq", "net"]))
    depth = draw(st.integers(1, 3))
    acts = tuple(draw(st.sampled_from(["relu", "tanh"])) for _ in range(depth - 1))
    opt = draw(st.sampled_from(["sgd", "adam", "adamw"]))
    opt_args = draw(OPT_ARGS[opt])
    if opt == "sgd" and opt_args["momentum"] == 0.0:
        opt_args["nesterov"] = False  # SGD raises otherwise
    scales = ["none", "global", "closure", "dict", "attr", "arg"] + (["module"] if model == "net" else [])
    n_calls = draw(st.integers(3, 12))
    eventful = draw(st.booleans())
    calls = tuple(tuple(draw(st.lists(events(opt, exclude), max_size=2))) if eventful and draw(st.booleans()) else ()
                  for _ in range(n_calls))
    program = Program(
        seed=draw(st.integers(0, 3)), model=model, acts=acts, loss=draw(st.sampled_from(["mse", "ce"])),
        opt=opt, opt_args=tuple(opt_args.items()), groups=draw(st.sampled_from(["one", "two", "subset"])),
        scale=draw(st.sampled_from(scales)), accumulate=draw(st.booleans()), lr_arg=draw(st.booleans()),
        lr_use=draw(st.sampled_from(["none", "tensor", "math", "branch", "type", "store"])),
        lr_decay=draw(st.booleans()),
        clip=draw(st.booleans()), ret=draw(st.sampled_from(["loss", "tuple", "none", "dict", "grad"])),
        zero=draw(st.sampled_from(["start", "start_keep", "end", "never", "model"])),
        capture=draw(st.sampled_from(["closure", "global"])),
        side=draw(st.sampled_from(["none", "count", "item", "store_tensor"])), branch=draw(st.booleans()),
        class_scale=draw(st.booleans()), calls=calls)
    off = {f: False for f in ("accumulate", "lr_arg", "lr_decay", "clip", "branch", "class_scale") if f in exclude}
    return dataclasses.replace(program, **off) if off else program


# ---- running a program twice ---------------------------------------------------------------------------

class Mismatch(AssertionError):
    """Compiled and eager disagree; ``kind`` names what differed (for grouping the findings of a long run)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass
class Stats:
    programs: int = 0
    calls: int = 0
    hits: int = 0
    plain_programs: int = 0
    plain_replayable: int = 0  # calls of event-free programs after the first two (warm-up, trace)
    plain_hits: int = 0
    warnings: int = 0
    float_inputs: int = 0  # programs with a variant that reads a float argument as a graph input


class Copy:
    """One built copy of a program: its namespace and the step to call (eager or compiled)."""

    def __init__(self, program: Program, code, compiled_backend: str | None) -> None:
        self.ns = {"__name__": "fuzz_program"}
        exec(code, self.ns)
        self.step = self.ns["step"] if compiled_backend is None else tg.compile(self.ns["step"], backend=compiled_backend)
        self.inputs = None

    def run_event(self, source: str):
        try:  # under a file name of its own, as code in a user's file: frames of "<string>" are not followed
            exec(compile(source, "<fuzz event>", "exec"), self.ns)
        except Exception as e:  # noqa: BLE001 (compared between the copies)
            return e
        return None

    def call(self, args, step=None):
        try:
            return (step or self.step)(*args), None
        except Exception as e:  # noqa: BLE001
            return None, e


def _outcome(error) -> str:
    return "no exception" if error is None else f"{type(error).__name__}: {error}"


def _tensors(ns) -> list:
    """(label, tensor) of every parameter the program can reach: the model's, then the optimizer's others."""
    model, opt = ns["model"], ns["opt"]
    found = [(name, p) for name, p in model.named_parameters()]
    seen = {id(p) for _, p in found}
    for g, group in enumerate(opt.param_groups):
        for j, p in enumerate(group["params"]):
            if id(p) not in seen:
                seen.add(id(p))
                found.append((f"opt.param_groups[{g}]['params'][{j}]", p))
    return found


def _array(t) -> np.ndarray:
    return np.array(t.detach().numpy(), copy=True)


def _snapshot(copy: Copy) -> list:
    """(label, value) of everything compared after a call."""
    items = []
    for label, p in _tensors(copy.ns):
        items.append((label, _array(p)))
        items.append((f"{label}.requires_grad", p.requires_grad))
        g = p.grad
        items.append((f"{label}.grad is None", g is None))
        if g is not None:
            items.append((f"{label}.grad", _array(g)))
    opt = copy.ns["opt"]
    for gi, group in enumerate(opt.param_groups):
        items.append((f"param_groups[{gi}] keys", sorted(k for k in group if k != "params")))
        for key in sorted(k for k in group if k != "params"):
            items.append((f"param_groups[{gi}][{key!r}]", group[key]))
        for j, p in enumerate(group["params"]):
            state = opt.state.get(p)  # .get: the state is a defaultdict
            items.append((f"state of param_groups[{gi}]['params'][{j}]", None if state is None else sorted(state)))
            for key, value in sorted((state or {}).items()):
                items.append((f"state[{gi}][{j}][{key!r}]", _array(value) if isinstance(value, tg.Tensor) else value))
    ns = copy.ns
    for label, value in [("GSCALE", ns["GSCALE"]), ("table", ns["table"]), ("cfg.scale", ns["cfg"].scale),
                         ("cfg.count", ns["cfg"].count), ("model.scale", getattr(ns["model"], "scale", None)),
                         ("cfg.lr_seen", ns["cfg"].lr_seen)]:
        items.append((label, value))
    last = ns["cfg"].last
    items.append(("cfg.last", _array(last) if isinstance(last, tg.Tensor) else last))
    if copy.inputs is not None:
        x = copy.inputs[0]
        items.append(("x.grad is None", x.grad is None))
        if x.grad is not None:
            items.append(("x.grad", _array(x.grad)))
    return items


def _flatten_result(value, label="result") -> list:
    if isinstance(value, tg.Tensor):
        return [(label, _array(value))]
    if isinstance(value, (tuple, list)):
        return [(f"{label} type", type(value).__name__), (f"{label} len", len(value))] + \
            [item for i, v in enumerate(value) for item in _flatten_result(v, f"{label}[{i}]")]
    if isinstance(value, dict):
        return [(f"{label} keys", sorted(value))] + \
            [item for k in sorted(value) for item in _flatten_result(value[k], f"{label}[{k!r}]")]
    return [(label, value)]


def _compare(expected: list, got: list, where: str) -> None:
    if [label for label, _ in expected] != [label for label, _ in got]:
        raise Mismatch("structure", f"{where}: compared items differ:\neager    {[l for l, _ in expected]}\n"
                                    f"compiled {[l for l, _ in got]}")
    for (label, e), (_, g) in zip(expected, got):
        if isinstance(e, np.ndarray) or isinstance(g, np.ndarray):
            ok = isinstance(e, np.ndarray) and isinstance(g, np.ndarray) and e.shape == g.shape and \
                e.dtype == g.dtype and np.allclose(g, e, rtol=1e-4, atol=1e-5, equal_nan=True)
            if not ok:
                diff = np.max(np.abs(g - e)) if isinstance(g, np.ndarray) and isinstance(e, np.ndarray) and \
                    e.shape == g.shape else "n/a"
                kind = "grad value" if label.endswith(".grad") else "state value" if label.startswith("state") \
                    else "result value" if label.startswith("result") else "parameter value"
                raise Mismatch(kind, f"{where}: {label} differs (max abs diff {diff}):\neager    {e!r}\n"
                                     f"compiled {g!r}")
        elif type(e) is float and type(g) is float and label.startswith(("result", "cfg.last")):
            if not np.isclose(g, e, rtol=1e-4, atol=1e-5, equal_nan=True):  # a tensor's value as a Python float
                raise Mismatch("result value", f"{where}: {label}: eager {e!r}, compiled {g!r}")
        elif not (type(e) is type(g) and (e == g or (e != e and g != g))):
            kind = "grad None-ness" if label.endswith("grad is None") else "requires_grad" if \
                label.endswith("requires_grad") else "hyperparameter" if label.startswith("param_groups") else \
                "result" if label.startswith("result") else "state keys" if label.startswith("state") else label
            raise Mismatch(kind, f"{where}: {label}: eager {e!r}, compiled {g!r}")


def _inputs(program: Program, call: int, batch: int, x_grad: bool) -> tuple:
    rng = np.random.default_rng(1000 * program.seed + call)
    x = tg.tensor(rng.standard_normal((batch, IN)).astype(np.float32))
    if program.loss == "mse":
        y = tg.tensor(rng.standard_normal((batch, OUT)).astype(np.float32))
    else:
        y = tg.tensor(rng.integers(0, OUT, batch))
    if x_grad:
        x.requires_grad_(True)
    return x, y


def run_program(program: Program, backend: str, stats: Stats | None = None) -> None:
    """Run a program eagerly and compiled side by side; raise Mismatch at the first difference."""
    try:
        _run_program(program, backend, stats)
    finally:
        tg.set_default_dtype(tg.float32)  # an event may have changed it


def _run_program(program: Program, backend: str, stats: Stats | None) -> None:
    source = program.setup_source()
    filename = f"<fuzz program {abs(hash(source)) % 10 ** 8}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show it
    code = compile(source, filename, "exec")
    eager, compiled = Copy(program, code, None), Copy(program, code, backend)
    batch, reuse, x_grad, lr, scale, decay = 6, False, False, 0.05, 1.0, program.lr_decay
    n_warnings = 0
    errors = False
    for i, events in enumerate(program.calls):
        mode, eager_call = None, False
        for event in events:
            kind = event[0]
            if kind == "inputs":
                reuse = event[1] == "reuse"
            elif kind == "x_grad":
                x_grad = event[1]
                for c in (eager, compiled):
                    if c.inputs is not None and reuse:
                        c.inputs[0].requires_grad_(x_grad)
            elif kind == "batch":
                batch = event[1]
            elif kind == "lr_arg":
                lr = event[1]
            elif kind == "lr_decay":
                decay = True
            elif kind == "scale_arg":
                scale = event[1]
            elif kind in ("no_grad_call", "inference_call"):
                mode = kind
            elif kind == "eager_call":
                eager_call = True
            else:
                text = program.event_source(event)
                e1, e2 = eager.run_event(text), compiled.run_event(text)
                if type(e1) is not type(e2):
                    raise Mismatch("event exception", f"before call {i}, event `{text}`: eager {_outcome(e1)}, "
                                                      f"compiled {_outcome(e2)}")
                errors = errors or e1 is not None
        for c in (eager, compiled):
            if not reuse or c.inputs is None or c.inputs[0].shape[0] != batch:
                c.inputs = _inputs(program, i, batch, x_grad)
        if decay:
            lr *= 0.7
        extra = ([lr] if program.lr_arg else []) + ([scale] if program.scale == "arg" else [])
        if eager_call:  # the step's own function, uncompiled, called on both copies
            _, e1 = eager.call(list(eager.inputs) + extra)
            _, e2 = compiled.call(list(compiled.inputs) + extra, compiled.ns["step"])
            if type(e1) is not type(e2):
                raise Mismatch("event exception", f"before call {i}, the uncompiled step: eager {_outcome(e1)}, "
                                                  f"compiled copy {_outcome(e2)}")
        with tg.no_grad() if mode == "no_grad_call" else tg.inference_mode() if mode == "inference_call" else \
                contextlib.nullcontext():
            expected, e_err = eager.call(list(eager.inputs) + extra)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CompileWarning)
                got, g_err = compiled.call(list(compiled.inputs) + extra)
        n_warnings += sum(issubclass(w.category, CompileWarning) for w in caught)
        for w in caught:
            if not issubclass(w.category, CompileWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        where = f"call {i}"
        if type(e_err) is not type(g_err):
            raise Mismatch("exception", f"{where}: eager {_outcome(e_err)}, compiled {_outcome(g_err)}")
        errors = errors or e_err is not None
        if e_err is None:
            _compare(_flatten_result(expected), _flatten_result(got), where)
        _compare(_snapshot(eager), _snapshot(compiled), where)
    if stats is not None:
        info = compiled.step.cache_info()
        stats.programs += 1
        stats.calls += len(program.calls)
        stats.hits += info.hits
        stats.warnings += n_warnings
        variants = [v for vs in compiled.step._variants.values() for v in vs]
        stats.float_inputs += any(i.role == "number" for v in variants for i in v.trace.graph.inputs)
        reads_changing_lr = program.lr_arg and program.lr_decay and program.lr_use in ("math", "branch", "type")
        if not any(program.calls) and not errors and program.side in ("none", "store_tensor") and not reads_changing_lr:
            stats.plain_programs += 1
            stats.plain_replayable += len(program.calls) - 2
            stats.plain_hits += info.hits


def _check(program: Program, backend: str, stats: Stats) -> None:
    try:
        run_program(program, backend, stats)
    except Mismatch as e:
        raise Mismatch(e.kind, f"{e}\n\n--- program ({backend}) ---\n{program.describe()}") from None


# ---- the tests ------------------------------------------------------------------------------------------

def _differential(backend: str, examples: int) -> Stats:
    stats = Stats()
    # Shrinking runs a failing program hundreds of times: with Numba (a kernel compile per new graph) that
    # takes many minutes, so the Numba test reports the program as found (its source is in the message;
    # `run_program(program, "interpreter")` or `reduce(program, "numba", kind)` make it smaller).
    phases = tuple(Phase) if backend == "interpreter" else (Phase.explicit, Phase.reuse, Phase.generate)

    # The suite's budget draws the same programs every run (a test that passes keeps passing); a budget
    # raised with TRACEGRAD_FUZZ_EXAMPLES explores new ones.
    @settings(max_examples=examples, deadline=None, phases=phases, derandomize="TRACEGRAD_FUZZ_EXAMPLES" not in os.environ,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(program=programs())
    def check(program):
        _check(program, backend, stats)

    check()
    return stats


def _assert_mostly_compiled(stats: Stats) -> None:
    # Event-free programs change nothing between calls: after the warm-up call and the traced call
    # every call should replay compiled code (a fallback is allowed, but not as the rule).
    assert stats.plain_programs == 0 or stats.plain_hits >= 0.8 * stats.plain_replayable, stats
    assert stats.hits > 0, stats


def test_compiled_equals_eager_interpreter(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_BACKEND", "interpreter")
    _assert_mostly_compiled(_differential("interpreter", _budget(25)))


@pytest.mark.slow
def test_compiled_equals_eager_numba(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_BACKEND", "numba")
    _assert_mostly_compiled(_differential("numba", _budget(10)))


# ---- a long run that collects every mismatch ----------------------------------------------------------

def _fails(program: Program, backend: str, kind: str | None) -> Mismatch | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_program(program, backend)
    except Mismatch as e:
        return e if kind is None or e.kind == kind else None
    except Exception as e:  # noqa: BLE001 (the harness itself broke on a candidate: not the same failure)
        return None if kind is not None else Mismatch("harness", repr(e))
    return None


def _simpler(program: Program):
    """Candidate programs one step simpler than ``program``."""
    calls = program.calls
    for i in range(len(calls)):  # drop trailing calls, then single calls
        if i >= 2:
            yield dataclasses.replace(program, calls=calls[:i])
    for i in range(len(calls)):
        yield dataclasses.replace(program, calls=calls[:i] + calls[i + 1:])
    for i, events in enumerate(calls):
        for j in range(len(events)):
            yield dataclasses.replace(program, calls=calls[:i] + (events[:j] + events[j + 1:],) + calls[i + 1:])
    for field, value in [("accumulate", False), ("lr_arg", False), ("lr_use", "none"), ("lr_decay", False), ("clip", False), ("ret", "loss"),
                         ("zero", "start"), ("capture", "closure"),
                         ("side", "none"), ("side", "store_tensor"), ("branch", False), ("class_scale", False), ("scale", "none"), ("groups", "one"),
                         ("loss", "mse"), ("model", "seq"), ("seed", 0), ("acts", program.acts[:1]), ("acts", ()),
                         ("opt", "sgd")]:
        if getattr(program, field) != value:
            changed = dataclasses.replace(program, **{field: value})
            if field == "opt":
                changed = dataclasses.replace(changed, opt_args=(("lr", 0.1),),
                                              calls=tuple(tuple(e for e in c if e[0] != "hyper") for c in calls))
            yield changed
    for k, (name, value) in enumerate(program.opt_args):
        if name != "lr":
            yield dataclasses.replace(program, opt_args=program.opt_args[:k] + program.opt_args[k + 1:])


def _failing_call(error: Exception) -> int | None:
    """The index of the call a mismatch message names ('call 3: ...', 'before call 3, ...')."""
    import re
    found = re.match(r"(?:before )?call (\d+)", str(error))
    return int(found.group(1)) if found else None


def reduce(program: Program, backend: str, kind: str, budget: int = 400) -> Program:
    """Greedily simplify a failing program while it still fails with the same kind of mismatch
    (at most ``budget`` candidate runs)."""
    error = _fails(program, backend, kind)
    last = _failing_call(error) if error else None
    if last is not None and last + 1 < len(program.calls):
        program = dataclasses.replace(program, calls=program.calls[:last + 1])
    progress = True
    while progress and budget > 0:
        progress = False
        for candidate in _simpler(program):
            budget -= 1
            if budget < 0:
                break
            if _fails(candidate, backend, kind):
                program, progress = candidate, True
                break
    return program


def _essence(program: Program, kind: str) -> tuple:
    """What a reduced failing program still needs: its kind of mismatch, event kinds and non-default features."""
    default = Program(0, "seq", (), "mse", "sgd", (), "one", "none", False, False, False, "loss", "start",
                      "closure", "none", False, False, ())
    features = tuple(f"{f.name}={getattr(program, f.name)!r}" for f in dataclasses.fields(Program)
                     if f.name not in ("seed", "calls", "opt_args", "acts")
                     and getattr(program, f.name) != getattr(default, f.name))
    return kind, tuple(sorted({e[0] for c in program.calls for e in c})), features


def collect(backend: str, examples: int, out: str, exclude: frozenset, max_reductions: int = 60) -> None:
    """Run ``examples`` programs without stopping at mismatches; reduce failing programs and group them by
    what the reduced program still needs."""
    import collections
    import json
    import time

    os.environ["TRACEGRAD_BACKEND"] = backend
    stats, failures = Stats(), []
    start = time.time()

    @settings(max_examples=examples, deadline=None, phases=[Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    @given(program=programs(exclude))
    def explore(program):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                run_program(program, backend, stats)
            except Mismatch as e:
                failures.append((program, e.kind, str(e)))
                stats.programs += 1
            except Exception as e:  # noqa: BLE001 (a harness error: recorded like a mismatch)
                failures.append((program, "harness", repr(e)))
                stats.programs += 1
        if stats.programs % 100 == 0:
            print(f"{stats.programs} programs, {len(failures)} mismatches, {time.time() - start:.0f} s", flush=True)

    explore()
    explored = time.time() - start
    groups = collections.OrderedDict()
    failures.sort(key=lambda f: (len(f[0].calls), sum(map(len, f[0].calls))))
    # One reduction per kind of mismatch and event kinds right before the failing call
    seen, reductions = set(), 0
    for program, kind, message in failures:
        call = _failing_call(Exception(message))
        rough = (kind, tuple(sorted({e[0] for e in program.calls[call]})) if call is not None else None)
        small = program
        if kind != "harness" and rough not in seen and reductions < max_reductions:
            seen.add(rough)
            reductions += 1
            small = reduce(program, backend, kind)
        groups.setdefault(_essence(small, kind), []).append((small, message))
    report = {"backend": backend, "exclude": sorted(exclude), "programs": stats.programs,
              "stats": dataclasses.asdict(stats), "seconds": round(explored), "failing": len(failures),
              "groups": []}
    for essence, cases in groups.items():
        small, message = min(cases, key=lambda c: (len(c[0].calls), sum(map(len, c[0].calls))))
        error = _fails(small, backend, None)
        report["groups"].append({"essence": essence, "count": len(cases), "message": str(error or message),
                                 "program": repr(small), "source": small.describe()})
        print(f"\n=== {essence}: {len(cases)} programs ===\n{error or message}\n{small.describe()}", flush=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(json.dumps({k: v for k, v in report.items() if k != "groups"}, default=str))
    print("groups:", *(f"{g['count']:5d}  {g['essence']}" for g in report["groups"]), sep="\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="interpreter")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--out", default="fuzz-report.json")
    parser.add_argument("--exclude", default="", help="comma-separated event kinds and features (lr_arg) to leave "
                                                      "out, e.g. to look past a known bug")
    options = parser.parse_args()
    collect(options.backend, options.examples, options.out, frozenset(filter(None, options.exclude.split(","))))
