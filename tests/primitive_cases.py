"""Shared cases: one or more per primitive, each a function of three tensors (a, b: 3x4, v: 4).

Used by the gradient checks and by the tracer/interpreter tests, so a primitive added to the table
needs one case here (the tests assert the table is covered).
"""
import numpy as np

import tracegrad as tg

R = np.random.default_rng(1)
A = R.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
B = R.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
V = R.uniform(0.5, 2.0, (4,)).astype(np.float32)
IDX = np.array([[0, 2, 1, 0], [1, 1, 0, 2], [2, 0, 2, 1]])

# name -> f(a, b, v): each case exercises the primitive(s) named (through the public ops).
CASES = {
    "abs": lambda a, b, v: (a - 1).abs(), "add": lambda a, b, v: a + v, "sub": lambda a, b, v: a - b,
    "mul": lambda a, b, v: a * v, "div": lambda a, b, v: a / b, "pow": lambda a, b, v: a ** b,
    "neg": lambda a, b, v: -a, "exp": lambda a, b, v: a.exp(), "log": lambda a, b, v: a.log(),
    "log1p": lambda a, b, v: a.log1p(), "expm1": lambda a, b, v: a.expm1(), "sqrt": lambda a, b, v: a.sqrt(),
    "sin": lambda a, b, v: a.sin(), "cos": lambda a, b, v: a.cos(), "tanh": lambda a, b, v: a.tanh(),
    "sigmoid": lambda a, b, v: a.sigmoid(), "relu": lambda a, b, v: (a - 1).relu(), "erf": lambda a, b, v: a.erf(),
    "sign": lambda a, b, v: (a - 1).sign() * a, "floor": lambda a, b, v: a.floor() + a,
    "ceil": lambda a, b, v: a.ceil() + a, "round": lambda a, b, v: a.round() + a, "trunc": lambda a, b, v: a.trunc() + a,
    "maximum": lambda a, b, v: tg.maximum(a, b), "minimum": lambda a, b, v: tg.minimum(a, b),
    "remainder": lambda a, b, v: a % b, "floor_divide": lambda a, b, v: (a // b) + a,
    "where": lambda a, b, v: tg.where(a > b, a, b), "cast": lambda a, b, v: a.double().float() * 2,
    "copy": lambda a, b, v: a.clone() * 3,
    "eq": lambda a, b, v: (a == b).float() + a, "ne": lambda a, b, v: (a != b).float() + a,
    "lt": lambda a, b, v: (a < b).float() + a, "le": lambda a, b, v: (a <= b).float() + a,
    "gt": lambda a, b, v: (a > b).float() + a, "ge": lambda a, b, v: (a >= b).float() + a,
    "logical_not": lambda a, b, v: (~(a > b)).float() + a, "isnan": lambda a, b, v: a.isnan().float() + a,
    "isinf": lambda a, b, v: a.isinf().float() + a,
    "bitwise_and": lambda a, b, v: ((a > 1) & (b > 1)).float() + a,
    "bitwise_or": lambda a, b, v: ((a > 1) | (b > 1)).float() + a,
    "bitwise_xor": lambda a, b, v: ((a > 1) ^ (b > 1)).float() + a,
    "sum": lambda a, b, v: a.sum(1, keepdim=True) * a, "amax": lambda a, b, v: a.amax(0) * v,
    "amin": lambda a, b, v: a.amin(-1, keepdim=True) * a, "prod": lambda a, b, v: a.prod(1),
    "count": lambda a, b, v: a.mean(1) * v.mean(),  # a traced mean divides by the count
    "argmax": lambda a, b, v: a.argmax(1).float() + a.sum(1), "argmin": lambda a, b, v: a.argmin(0).float() + v,
    "any": lambda a, b, v: (a > 1.5).any(1).float() + a.sum(1), "all": lambda a, b, v: (a > 0.7).all(0).float() + v,
    "reshape": lambda a, b, v: a.reshape(2, 6) * 2, "permute": lambda a, b, v: a.t() @ b,
    "expand": lambda a, b, v: v.expand(3, 4) * a, "cat": lambda a, b, v: tg.cat([a, b], 1),
    "matmul": lambda a, b, v: a @ b.t(), "index": lambda a, b, v: a[1:, [0, 2]] * a[a > 1].sum(),
    "index_put": lambda a, b, v: a.index_put((tg.tensor([0, 2]),), b[0]),
    "gather": lambda a, b, v: a.gather(1, tg.tensor(IDX)),
    "scatter_add": lambda a, b, v: a.scatter_add(1, tg.tensor(IDX), b),
    "argsort": lambda a, b, v: a.sort(1).values * a.argsort(0, descending=True).float() + b.topk(2, 0).values.sum(),
}


def inputs(dtype=np.float32):
    """Fresh leaf tensors a, b, v that require grad."""
    return [tg.tensor(x.astype(dtype), requires_grad=True) for x in (A, B, V)]
