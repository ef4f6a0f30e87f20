"""tracegrad.viz.make_dot: DOT text of the autograd graph, and rendering through Graphviz."""
import re
import shutil

import pytest

import tracegrad
from tracegrad.viz import make_dot

NODE_LINE = re.compile(r'^\t(n\d+) \[label="((?:[^"\\]|\\.)*)"')
EDGE_LINE = re.compile(r"^\t(n\d+) -> (n\d+)( \[style=dotted\])?$")


def parse_dot(source: str) -> tuple[dict[str, str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Node labels by id, solid edges and dotted (saved-tensor) edges, as label pairs."""
    labels, solid, dotted = {}, [], []
    for line in source.splitlines():
        if match := NODE_LINE.match(line):
            labels[match[1]] = match[2].replace("\\n", "\n")
        elif match := EDGE_LINE.match(line):
            (dotted if match[3] else solid).append((match[1], match[2]))
    as_labels = lambda edges: [(labels[a], labels[b]) for a, b in edges]  # noqa: E731
    return labels, as_labels(solid), as_labels(dotted)


def reachable_nodes(tensor) -> list:
    """Every autograd node behind ``tensor``, each once."""
    found, pending = {}, [tensor.grad_fn]
    while pending:
        node = pending.pop()
        if node is not None and id(node) not in found:
            found[id(node)] = node
            pending += [child for child, _ in node.next_functions]
    return list(found.values())


@pytest.fixture
def mlp():
    """A two-layer MLP loss on fixed data, with its named parameters."""
    tracegrad.manual_seed(0)
    params = {"fc1.weight": tracegrad.randn(5, 3, requires_grad=True),
              "fc1.bias": tracegrad.zeros(5, requires_grad=True),
              "fc2.weight": tracegrad.randn(1, 5, requires_grad=True)}
    x = tracegrad.randn(4, 3)
    hidden = tracegrad.relu(x @ params["fc1.weight"].T + params["fc1.bias"])
    loss = (hidden @ params["fc2.weight"].T).sigmoid().mean()
    return loss, params, hidden


def test_mlp_graph_has_every_node_and_edge(mlp):
    loss, params, _ = mlp
    labels, edges, _ = parse_dot(make_dot(loss, params=params).source)
    nodes = reachable_nodes(loss)
    assert len(labels) == len(nodes) + 1  # plus the output tensor
    op_names = [node.name() for node in nodes if not hasattr(node, "variable")]
    assert sorted(label for label in labels.values() if "\n" not in label) == sorted(op_names)
    assert len(edges) == sum(child is not None for node in nodes for child, _ in node.next_functions) + 1
    assert (loss.grad_fn.name(), "output\n()") in edges


def test_parameters_are_labelled_with_name_and_shape(mlp):
    loss, params, hidden = mlp
    labels, edges, _ = parse_dot(make_dot(loss, params=params).source)
    assert {"fc1.weight\n(5, 3)", "fc1.bias\n(5)", "fc2.weight\n(1, 5)"} <= set(labels.values())
    bias_consumer = hidden.grad_fn.next_functions[0][0]  # relu's input: the bias addition
    assert ("fc1.bias\n(5)", bias_consumer.name()) in edges


def test_unnamed_leaves_show_their_shape(mlp):
    loss, _, _ = mlp
    labels, _, _ = parse_dot(make_dot(loss).source)
    assert {"(5, 3)", "(5)", "(1, 5)"} <= set(labels.values())


def test_detached_and_no_grad_branches_are_absent():
    kept = tracegrad.ones(3, requires_grad=True)
    detached = tracegrad.ones(3, requires_grad=True)
    frozen = tracegrad.ones(3, requires_grad=True)
    with tracegrad.no_grad():
        scaled = frozen * 2
    loss = (kept * 3).sum() + (detached * 4).detach().sum() + (kept * scaled).sum()
    source = make_dot(loss, params={"kept": kept, "detached": detached, "frozen": frozen}).source
    assert "kept" in source
    assert "detached" not in source and "frozen" not in source


def test_source_is_deterministic(mlp):
    loss, params, _ = mlp
    assert make_dot(loss, params=params).source == make_dot(loss, params=params).source


def test_several_outputs_share_their_common_nodes():
    x = tracegrad.ones(2, requires_grad=True)
    common = x.exp()
    first, second = common.sum(), (common * 2).sum()
    labels, edges, _ = parse_dot(make_dot((first, second)).source)
    assert {"output 0\n()", "output 1\n()"} <= set(labels.values())
    assert list(labels.values()).count(common.grad_fn.name()) == 1
    assert len(labels) == len(set(map(id, reachable_nodes(first) + reachable_nodes(second)))) + 2


def test_a_leaf_output_is_a_single_node():
    weight = tracegrad.ones(2, 2, requires_grad=True)
    labels, edges, _ = parse_dot(make_dot(weight, params={"w": weight}).source)
    assert list(labels.values()) == ["w\n(2, 2)"] and edges == []


def test_show_saved_draws_saved_tensors_with_dotted_edges():
    x = tracegrad.ones(3, requires_grad=True)
    y = tracegrad.full((3,), 2.0, requires_grad=True)
    product = x * y  # the product's gradient needs both factors
    loss = product.sum()
    _, _, hidden_saved = parse_dot(make_dot(loss).source)
    _, _, shown_saved = parse_dot(make_dot(loss, show_saved=True).source)
    assert hidden_saved == []
    assert [target for _, target in shown_saved].count(product.grad_fn.name()) == 2


def test_show_attrs_adds_lines_to_op_labels():
    x = tracegrad.ones(2, 3, requires_grad=True)
    loss = x.permute(1, 0).sum()
    plain, _, _ = parse_dot(make_dot(loss).source)
    detailed, _, _ = parse_dot(make_dot(loss, show_attrs=True).source)
    assert len(plain) == len(detailed)
    assert any(label.startswith(loss.grad_fn.name() + "\n") for label in detailed.values())


def test_labels_are_escaped():
    weight = tracegrad.ones(2, requires_grad=True)
    source = make_dot(weight * 2, params={'say "hi"\\': weight}).source
    assert 'label="say \\"hi\\"\\\\\\n(2)"' in source


def test_render_without_graphviz_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    graph = make_dot(tracegrad.ones(2, requires_grad=True) * 2)
    with pytest.raises(RuntimeError, match="install Graphviz"):
        graph.render(tmp_path / "graph")
    assert list(tmp_path.iterdir()) == []
    assert graph._repr_svg_() is None


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
def test_render_writes_source_and_drawing(tmp_path, mlp):
    loss, params, _ = mlp
    graph = make_dot(loss, params=params)
    output = graph.render(tmp_path / "graph", format="svg")
    assert output == str(tmp_path / "graph.svg")
    assert (tmp_path / "graph").read_text() == graph.source
    svg = (tmp_path / "graph.svg").read_text()
    assert "<svg" in svg and "fc1.weight" in svg
    assert "<svg" in graph._repr_svg_()


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
def test_render_with_an_unknown_format_reports_the_graphviz_error(tmp_path):
    graph = make_dot(tracegrad.ones(2, requires_grad=True) * 2)
    with pytest.raises(RuntimeError, match="failed"):
        graph.render(tmp_path / "graph", format="no-such-format")
