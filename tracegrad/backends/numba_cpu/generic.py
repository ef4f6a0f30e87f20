"""One kernel for every size of a dimension (the batch, typically): automatic dynamic dimensions.

When a step's graph comes back with other sizes, its kernel source differs from the first one's only
in some integers (loop bounds, buffer shapes). Comparing the two sources token by token finds them:
integers that differ, always in the same pairs (32 where the other has 48), become symbols ``d0``,
``d1``... read from a parameter's shape at run time (``d0 = v0.shape[0]``). Later sizes reuse that
kernel only when their own source, generated as for a literal kernel, is token for token the generic
source with its symbols replaced by their sizes: the generic kernel then runs exactly the code the
literal one would. Anything else (a size that changed a decision, a size baked into a constant or
outside the function) makes a literal kernel, as before.
"""
from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from dataclasses import dataclass

from ...ir import Graph

_SKIPPED = (tokenize.COMMENT, tokenize.NL)


def family(graph: Graph) -> str:
    """A hash of the graph's structure with every number left out: graphs that may share a generic kernel."""
    text = re.sub(r"\d+", "#", re.sub(r" '[^']*'", "", graph.text(source_lines=False)))
    return hashlib.sha256(text.encode()).hexdigest()


def _tokens(source: str) -> list:
    return [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in _SKIPPED]


def _body(tokens: list) -> range:
    """Token positions of the entry function's body: from its ``def`` to the next module-level statement."""
    start = next(i for i, t in enumerate(tokens) if t.type == tokenize.NAME and t.string == "def")
    end = next(i for i in range(start + 1, len(tokens)) if tokens[i].start[1] == 0 and tokens[i].type == tokenize.NAME)
    return range(start, end)


def _size(token) -> int | None:
    """The value of an integer literal that can be a dimension size that varies (2 or more), else None."""
    return int(token.string) if token.type == tokenize.NUMBER and token.string.isdigit() and \
        int(token.string) >= 2 else None


def _parameter_shapes(source: str, graph: Graph) -> list:
    """The shape of each parameter of the entry function: the graph inputs ARG_IDS names, then the outputs."""
    arg_ids = ast.literal_eval(re.search(r"^ARG_IDS = (\(.*?\))", source, re.M).group(1))
    inputs = {v.id: v.type.shape for v in graph.inputs}
    return [inputs[i] for i in arg_ids] + [v.type.shape for v in graph.outputs]


@dataclass
class Generic:
    """A kernel source generic in some sizes, and what it takes for a graph to use it."""

    source: str
    template: list  # (type, string) of each token of the first graph's source
    symbols: dict   # token position -> symbol name
    readers: dict   # symbol name -> (parameter position, axis) its value is read from
    compiled: object = None  # a weak reference to the loaded module's holder, once compiled

    @classmethod
    def of(cls, first: str, first_graph: Graph, second: str, second_graph: Graph) -> "Generic | None":
        """The generic form of two literal sources of one family, or None when they differ otherwise
        than in sizes read from parameters' shapes."""
        a, b = _tokens(first), _tokens(second)
        if len(a) != len(b):
            return None
        body, pairs, symbols = _body(a), {}, {}
        for i, (x, y) in enumerate(zip(a, b)):
            if (x.type, x.string) == (y.type, y.string):
                continue
            if i not in body or _size(x) is None or _size(y) is None:
                return None
            symbols[i] = pairs.setdefault((_size(x), _size(y)), f"d{len(pairs)}")
        if not pairs:
            return None
        shapes = list(zip(_parameter_shapes(first, first_graph), _parameter_shapes(second, second_graph)))
        readers = {}
        for (x, y), name in pairs.items():
            found = [(p, k) for p, (sa, sb) in enumerate(shapes) for k in range(min(len(sa), len(sb)))
                     if (sa[k], sb[k]) == (x, y)]
            if not found:
                return None  # a size no parameter has: it would need an expression
            readers[name] = found[0]
        return cls(_write(first, a, symbols, readers), [(t.type, t.string) for t in a], symbols, readers)

    def fits(self, source: str, graph: Graph) -> bool:
        """Whether this graph's literal source is the generic one with its symbols replaced by sizes that
        the parameters' shapes give at run time."""
        tokens = _tokens(source)
        if len(tokens) != len(self.template):
            return False
        values: dict = {}
        for i, (expected, token) in enumerate(zip(self.template, tokens)):
            name = self.symbols.get(i)
            if name is None:
                if expected != (token.type, token.string):
                    return False
            elif _size(token) is None or values.setdefault(name, _size(token)) != _size(token):
                return False
        shapes = _parameter_shapes(source, graph)
        return all(shapes[p][k] == values[name] for name, (p, k) in self.readers.items())


def _write(source: str, tokens: list, symbols: dict, readers: dict) -> str:
    """The source with the symbol positions renamed and the symbols read at the top of the entry function."""
    lines = source.split("\n")
    for i in sorted(symbols, reverse=True):  # right to left: earlier columns stay valid
        (row, start), (_, end) = tokens[i].start, tokens[i].end
        lines[row - 1] = lines[row - 1][:start] + symbols[i] + lines[row - 1][end:]
    definition = tokens[_body(tokens).start].start[0]  # the `def` line
    parameters = re.search(r"\((.*)\)", lines[definition - 1]).group(1).split(", ")
    reads = [f"    {name} = {parameters[p]}.shape[{k}]  # a size that varies between calls"
             for name, (p, k) in readers.items()]
    return "\n".join(lines[:definition] + reads + lines[definition:])
