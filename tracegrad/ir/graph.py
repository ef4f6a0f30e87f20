"""The IR: a small typed SSA graph of primitive applications.

A graph has inputs (each with a role), nodes (primitive, operands, attributes, result type, source
line), outputs, and a write-back table (which input buffer receives which value after the step).
``text()`` is the one canonical form: one line per node, parseable by ``parse``, and (without source
lines) the input of the structural hash.
"""
from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes
from ..primitives.index_key import IndexKey

ROLES = ("data", "parameter", "state", "grad", "hyper", "number", "constant")

_SHORT = {"float16": "f16", "float32": "f32", "float64": "f64", "int8": "i8", "int16": "i16", "int32": "i32",
          "int64": "i64", "uint8": "u8", "bool": "b8"}
_LONG = {v: k for k, v in _SHORT.items()}


@dataclass(frozen=True)
class Type:
    """A value's type: dtype and shape."""

    dtype: dtypes.dtype
    shape: tuple

    def __str__(self) -> str:
        return f"{_SHORT[self.dtype.name]}[{','.join(map(str, self.shape))}]"

    @staticmethod
    def parse(text: str) -> "Type":
        """Read 'f32[2,3]'."""
        m = re.fullmatch(r"(\w+)\[([\d,]*)\]", text.strip())
        if m is None or m.group(1) not in _LONG:
            raise ValueError(f"bad type {text!r}; expected e.g. f32[2,3]")
        shape = tuple(int(s) for s in m.group(2).split(",") if s)
        return Type(dtypes._NAMES[_LONG[m.group(1)]], shape)


@dataclass(eq=False)
class Value:
    """An SSA value: a graph input or the result of one node."""

    id: int
    type: Type
    role: str | None = None   # inputs only: one of ROLES
    name: str = ""            # inputs only: where it came from (e.g. 'model.0.weight')
    const: object = None      # constant inputs only: the ndarray baked into the graph

    def __str__(self) -> str:
        return f"%{self.id}"


@dataclass(eq=False)
class Node:
    """One primitive application: ``out = prim(*operands, **attrs)``."""

    prim: str
    operands: list
    attrs: dict
    out: Value
    source: str = ""  # 'file.py:41' of the user's line
    adjoint: bool = False  # recorded by the autodiff pass (the backward of the step)


@dataclass(eq=False)
class Graph:
    """A traced step: inputs, nodes in execution order, outputs and write-backs."""

    name: str = "step"
    inputs: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    writebacks: list = field(default_factory=list)  # (input value, new value)
    guards: list = field(default_factory=list)      # (value, expected Python scalar, source line)
    _next_id: int = 0

    def new_value(self, type_: Type, role: str | None = None, name: str = "") -> Value:
        """A fresh SSA value."""
        value = Value(self._next_id, type_, role, name)
        self._next_id += 1
        return value

    def add_input(self, type_: Type, role: str, name: str = "", const=None) -> Value:
        """Append a graph input with its role (constants carry their array)."""
        if role not in ROLES:
            raise ValueError(f"unknown input role {role!r}; expected one of {ROLES}")
        if (role == "constant") != (const is not None):
            raise ValueError("constant inputs, and only they, carry a value")
        value = self.new_value(type_, role, name)
        value.const = const
        self.inputs.append(value)
        return value

    def add_node(self, prim: str, operands: list, attrs: dict, type_: Type, source: str = "",
                 adjoint: bool = False) -> Value:
        """Append a node and return its result."""
        out = self.new_value(type_)
        self.nodes.append(Node(prim, list(operands), dict(attrs), out, source, adjoint))
        return out

    def results(self) -> set:
        """Ids of the values the step must produce: outputs, guarded values and write-back sources."""
        return {v.id for v in self.outputs} | {v.id for v, _, _ in self.guards} | {src.id for _, src in self.writebacks}

    def readers(self) -> dict:
        """Value id -> the nodes that read it, in execution order."""
        readers: dict[int, list] = {}
        for n in self.nodes:
            for o in n.operands:
                readers.setdefault(o.id, []).append(n)
        return readers

    # ---- text -------------------------------------------------------------------------------

    def text(self, source_lines: bool = True, mark_adjoint: bool = False) -> str:
        """The canonical text form (one line per node); ``mark_adjoint`` serves the dumps."""
        ins = ", ".join(_input_text(v) for v in self.inputs)
        lines = [f"graph {self.name}({ins}) {{"]
        for n in self.nodes:
            attrs = "".join(f" {k}={_attr_text(v)}" for k, v in sorted(n.attrs.items()))
            operands = ", ".join(str(o) for o in n.operands)
            line = f"  {n.out} = {n.prim} {operands}{' {' + attrs.strip() + '}' if attrs else ''} : {n.out.type}"
            if source_lines and n.source:
                line += f"   # {n.source}"
            if mark_adjoint and n.adjoint:
                line += "   [adjoint]" if source_lines and n.source else "   # [adjoint]"
            lines.append(line)
        for value, expected, source in self.guards:
            lines.append(f"  guard {value} == {expected!r}" + (f"   # {source}" if source_lines and source else ""))
        lines.append(f"  return {', '.join(str(v) for v in self.outputs)}")
        for dst, src in self.writebacks:
            lines.append(f"  writeback {dst} <- {src}")
        lines.append("}")
        return "\n".join(lines)

    __str__ = text

    def hash(self) -> str:
        """sha256 of the canonical text without source lines or input names, and of every constant's
        values: equal hashes, equal graphs (a kernel may inline any constant as a literal)."""
        digest = hashlib.sha256(re.sub(r" '[^']*'", "", self.text(source_lines=False)).encode())
        for v in self.inputs:
            if v.const is not None and v.const.size > 1:
                digest.update(np.ascontiguousarray(v.const).tobytes())
        return digest.hexdigest()


def _input_text(v: Value) -> str:
    """'%3: f32[] constant =0.5': scalar constants show their value, larger ones only their type."""
    text = f"{v}: {v.type} {v.role}" + (f" {v.name!r}" if v.name else "")
    if v.const is not None and v.const.size == 1:
        text += f" ={v.const.reshape(()).item()!r}"
    return text


def _attr_text(value) -> str:
    """Attributes print as Python literals; dtypes by their short name, index keys as subscripts in brackets."""
    if isinstance(value, dtypes.dtype):
        return _SHORT[value.name]
    if isinstance(value, IndexKey):
        return str(value)
    return repr(value).replace(" ", "")


def _attr_parse(text: str):
    if text in _LONG:
        return dtypes._NAMES[_LONG[text]]
    if text.startswith("["):  # no attribute is a list: brackets are an index key's
        return IndexKey.parse(text)
    return ast.literal_eval(text)


_NODE = re.compile(r"\s*%(\d+) = (\w+) ?(.*?)(?: \{(.*)\})? : (\S+)(?:\s+# (.*))?$")
_INPUT = re.compile(r"%(\d+): (\S+) (\w+)(?: '([^']*)')?(?: =([^,)]+))?")


def parse(text: str) -> Graph:
    """Read the canonical text form back into a Graph."""
    lines = [l for l in text.strip().splitlines() if l.strip()]
    head = re.fullmatch(r"graph (\w+)\((.*)\) \{", lines[0].strip())
    if head is None or lines[-1].strip() != "}":
        raise ValueError("not a tracegrad graph: expected 'graph NAME(...) {' ... '}'")
    graph = Graph(head.group(1))
    values: dict[int, Value] = {}
    for m in _INPUT.finditer(head.group(2)):
        v = Value(int(m.group(1)), Type.parse(m.group(2)), m.group(3), m.group(4) or "")
        if m.group(5) is not None:
            v.const = np.full(v.type.shape, ast.literal_eval(m.group(5)), dtype=v.type.dtype.np)
        values[v.id] = v
        graph.inputs.append(v)
    for line in lines[1:-1]:
        stripped = line.strip()
        if stripped.startswith("guard"):
            m = re.fullmatch(r"guard %(\d+) == (.+?)(?:\s+# (.*))?", stripped)
            graph.guards.append((values[int(m.group(1))], ast.literal_eval(m.group(2)), m.group(3) or ""))
        elif stripped.startswith("return"):
            graph.outputs = [values[int(i)] for i in re.findall(r"%(\d+)", stripped)]
        elif stripped.startswith("writeback"):
            dst, src = (values[int(i)] for i in re.findall(r"%(\d+)", stripped))
            graph.writebacks.append((dst, src))
        else:
            m = _NODE.fullmatch(line)
            if m is None:
                raise ValueError(f"can't parse IR line: {line!r}")
            operands = [values[int(i)] for i in re.findall(r"%(\d+)", m.group(3))]
            attrs = {}
            for item in _split_attrs(m.group(4) or ""):
                key, _, val = item.partition("=")
                attrs[key] = _attr_parse(val)
            out = Value(int(m.group(1)), Type.parse(m.group(5)))
            values[out.id] = out
            graph.nodes.append(Node(m.group(2), operands, attrs, out, m.group(6) or ""))
    graph._next_id = max(values) + 1 if values else 0
    return graph


def _split_attrs(text: str) -> list[str]:
    """Split 'a=1 b=(1,2)' at spaces outside brackets."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == " " and depth == 0:
            if current:
                items.append(current)
            current = ""
        else:
            current += ch
    if current:
        items.append(current)
    return items
