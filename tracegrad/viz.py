"""Pictures of the eager autograd graph: ``make_dot(loss)`` gives Graphviz DOT text of what backward will walk.

The graph is read through the public node API only (``grad_fn``, ``next_functions``,
``name()``, ``AccumulateGrad.variable``), so whatever ``detach`` or ``no_grad`` cut off
has no edge and is simply not drawn.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Mapping, Sequence

OUTPUT_COLOR = "darkolivegreen1"
LEAF_COLOR = "lightblue"
SAVED_COLOR = "orange"
GRAPH_HEADER = [
    "digraph {",
    '\tgraph [size="12,12"]',
    "\tnode [align=left fontname=monospace fontsize=10 height=0.2 ranksep=0.1 shape=box style=filled]",
]
DOT_MISSING_MESSAGE = (
    "the Graphviz `dot` program was not found on PATH, so the graph can't be rendered; install Graphviz "
    "(https://graphviz.org/download/, e.g. `apt install graphviz`, `brew install graphviz` or "
    "`conda install graphviz`), or use the DOT text in `.source`")


class DotGraph:
    """DOT source of a graph, renderable with the Graphviz `dot` program."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __str__(self) -> str:
        return self.source

    def pipe(self, format: str = "svg") -> bytes:
        """The graph drawn in ``format`` (svg, png, pdf, ...) by Graphviz, as bytes."""
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError(DOT_MISSING_MESSAGE)
        done = subprocess.run([dot, f"-T{format}"], input=self.source.encode(), capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"Graphviz `dot -T{format}` failed with exit status {done.returncode}: "
                               f"{done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    def render(self, filename: str | os.PathLike, format: str = "svg") -> str:
        """Write the DOT text to ``filename`` and the drawing to ``filename.format``; return the drawing's path."""
        drawing = self.pipe(format)  # first, so that nothing is written when Graphviz is missing
        filename = os.fspath(filename)
        with open(filename, "w", encoding="utf-8") as source_file:
            source_file.write(self.source)
        output_path = f"{filename}.{format}"
        with open(output_path, "wb") as output_file:
            output_file.write(drawing)
        return output_path

    def _repr_svg_(self) -> str | None:
        """Inline picture for Jupyter; None (plain-text fallback) when Graphviz is not installed."""
        if shutil.which("dot") is None:
            return None
        return self.pipe("svg").decode()


def make_dot(var: Any, params: Mapping[str, Any] | None = None, show_attrs: bool = False,
             show_saved: bool = False) -> DotGraph:
    """Draw the autograd graph behind a tensor (or a tuple/list of tensors) as Graphviz DOT.

    ``params`` maps names to leaf tensors (e.g. ``dict(model.named_parameters())``) so that
    leaves are labelled with their names; ``show_attrs`` adds each node's recorded attributes
    (dims, shapes, ...) to its label; ``show_saved`` also draws the tensors each node saved
    for backward (as long as they have not been freed by a backward pass).
    """
    builder = _DotBuilder(params or {}, show_attrs, show_saved)
    outputs = list(var) if isinstance(var, (tuple, list)) else [var]
    for position, tensor in enumerate(outputs):
        name = "output" if len(outputs) == 1 else f"output {position}"
        builder.add_output(tensor, name)
    return DotGraph("\n".join(GRAPH_HEADER + builder.lines + ["}"]) + "\n")


class _DotBuilder:
    """Walks autograd nodes and collects DOT lines; node ids follow the order of discovery."""

    def __init__(self, params: Mapping[str, Any], show_attrs: bool, show_saved: bool) -> None:
        self.param_names = {id(tensor): name for name, tensor in params.items()}
        self.show_attrs = show_attrs
        self.show_saved = show_saved
        self.lines: list[str] = []
        self._ids: dict[int, str] = {}
        self._alive: list = []  # keeps every drawn object referenced, so no id() is reused during the walk
        self._drawn: set[int] = set()

    def add_output(self, tensor: Any, name: str) -> None:
        """Draw an output tensor and, through its grad_fn, everything it depends on."""
        label = _tensor_label(self.param_names.get(id(tensor), name), tensor)
        self._declare(tensor, label, OUTPUT_COLOR)
        if tensor.grad_fn is not None:
            self._walk(tensor.grad_fn)
            self._edge(tensor.grad_fn, tensor)

    def _walk(self, root: Any) -> None:
        """Draw each node reachable from ``root`` once (iteratively: graphs can be very deep)."""
        pending = [root]
        while pending:
            node = pending.pop()
            if id(node) in self._drawn:
                continue
            self._draw_node(node)
            children = [child for child, _ in node.next_functions if child is not None]
            for child in children:
                self._edge(child, node)
            pending.extend(reversed(children))  # so the first input is drawn first

    def _draw_node(self, node: Any) -> None:
        variable = getattr(node, "variable", None)
        if variable is not None:  # AccumulateGrad: draw the leaf tensor it feeds
            label = _tensor_label(self.param_names.get(id(variable), ""), variable)
            self._declare(node, label, LEAF_COLOR)
            return
        lines = [node.name()]
        if self.show_attrs:
            lines += [f"{key}: {value}" for key, value in sorted(getattr(node, "attrs", {}).items())]
        self._declare(node, "\n".join(lines))
        if self.show_saved:
            for tensor in _saved_tensors(node):
                self._draw_saved(tensor, node)

    def _draw_saved(self, tensor: Any, node: Any) -> None:
        if id(tensor) not in self._drawn:
            self._declare(tensor, _tensor_label(self.param_names.get(id(tensor), "saved"), tensor), SAVED_COLOR)
        self._edge(tensor, node, style="dotted")

    def _declare(self, obj: Any, label: str, color: str | None = None) -> None:
        self._drawn.add(id(obj))
        fill = f" fillcolor={color}" if color else ""
        self.lines.append(f'\t{self._id(obj)} [label="{_escape(label)}"{fill}]')

    def _edge(self, source: Any, target: Any, style: str | None = None) -> None:
        attributes = f" [style={style}]" if style else ""
        self.lines.append(f"\t{self._id(source)} -> {self._id(target)}{attributes}")

    def _id(self, obj: Any) -> str:
        key = id(obj)
        if key not in self._ids:
            self._ids[key] = f"n{len(self._ids)}"
            self._alive.append(obj)
        return self._ids[key]


def _saved_tensors(node: Any) -> Sequence:
    """The tensors a node keeps for backward, without the use-time version check (drawing is not using)."""
    return [t for t in getattr(node, "_saved", ()) if t is not None]


def _tensor_label(name: str, tensor: Any) -> str:
    shape = "(" + ", ".join(str(size) for size in tensor.shape) + ")"
    return f"{name}\n{shape}" if name else shape


def _escape(text: str) -> str:
    """Text as a DOT string body: backslashes and quotes escaped, newlines as centered line breaks."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
