"""A call's arguments as a compiled function sees them: leaves, structure, keys and names.

``flatten`` splits nested tuples, lists and dicts into leaves and a hashable structure; ``leaf_key``
is what a variant assumes about one leaf (a tensor's shape, dtype and requires_grad; a Python value
itself; another object's identity). A float argument traced as a graph input is keyed by type only
(``DYNAMIC``); only whole arguments (not leaves nested in a list) can be.
"""
from __future__ import annotations

import inspect

from ..tensor import Tensor

DYNAMIC = ("value", "float", "<any value>")  # the leaf key of a float argument traced as a graph input


def flatten(obj, leaves: list) -> object:
    """Leaves of nested tuples/lists/dicts, and a hashable description of the structure."""
    if type(obj) is tuple and not obj:
        return ("tuple", ())
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, tuple(flatten(o, leaves) for o in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((k, flatten(v, leaves)) for k, v in sorted(obj.items(), key=repr)))
    leaves.append(obj)
    return "*"


def leaf_key(x) -> tuple:
    """What a traced variant assumes about one argument."""
    if isinstance(x, Tensor):
        return ("tensor", x._data.shape, x._data.dtype.str, x._requires_grad)
    if x is None or isinstance(x, (bool, int, float, str)):
        return ("value", type(x).__name__, x)
    return ("object", id(x))


def argument_name(fn, structure, position: int) -> str:
    """How a user names a leaf of the arguments: 'argument 'lr'' for a whole argument."""
    name = parameter_name(fn, structure, position)
    return f"argument leaf #{position}" if name is None else f"argument {name!r}"


def parameter_name(fn, structure, position: int) -> str | None:
    """The parameter a leaf of the arguments is passed as, when it is a whole argument (else None)."""
    where = whole_arguments(structure).get(position)
    if where is None or where[0] == "kwarg":
        return None if where is None else where[1]
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()]
    except (TypeError, ValueError):
        names = []
    return names[where[1]] if where[1] < len(names) else f"arg{where[1]}"


def leaf_count(structure) -> int:
    """How many leaves a structure holds."""
    if structure == "*":
        return 1
    kind, children = structure
    return sum(leaf_count(c[1] if kind == "dict" else c) for c in children)


def whole_arguments(structure) -> dict:
    """{leaf position: ("arg", i) | ("kwarg", name)} for the leaves that are whole arguments of a call."""
    found, position = {}, 0
    if not (isinstance(structure, tuple) and structure[0] == "tuple" and len(structure[1]) == 2):
        return found
    (_, args), (_, kwargs) = structure[1]
    for where, child in [(("arg", i), c) for i, c in enumerate(args)] + [(("kwarg", k), c) for k, c in kwargs]:
        if child == "*":
            found[position] = where
        position += leaf_count(child)
    return found


def positional(structure) -> bool:
    """Whether every leaf is a whole positional argument (``f(x, y, lr)``: no keywords, nothing nested)."""
    if isinstance(structure, int):  # compile's shortcut for positional tensor arguments
        return True
    whole = whole_arguments(structure)
    return len(whole) == leaf_count(structure) and all(kind == "arg" for kind, _ in whole.values())


def shared_buffers(leaves) -> tuple | None:
    """Which tensor arguments share memory (the same tensor twice, a tensor and its detach()): None when
    none do. A variant traced with distinct arguments must not run on aliased ones, nor the reverse."""
    buffers = [id(x._vc) for x in leaves if isinstance(x, Tensor)]  # views and detach() share the counter
    if len(set(buffers)) == len(buffers):
        return None
    return tuple(map(buffers.index, buffers))
