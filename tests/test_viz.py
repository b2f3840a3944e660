"""Graph visualisation: DOT and Mermaid text for a known graph, rendering, the example."""

import os
import re
import shutil
from pathlib import Path

import pytest

import distgrad as dg
from distgrad import nn, viz
from tests import mpijob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot not installed")


def dot_graph(text):
    """{node id: label} and the set of (from label, to label, dashed) edges of DOT text."""
    found = re.findall(r'^  (\w+) \[label="(.*?)"', text, re.M)
    labels = {n: label.replace("\\n", " ") for n, label in found}
    edges = {
        (labels[a], labels[b], bool(d))
        for a, b, d in re.findall(r"^  (\w+) -> (\w+)( \[style=dashed\])?$", text, re.M)
    }
    return labels, edges


def known_graph():
    a = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = dg.tensor([4.0, 5.0, 6.0], requires_grad=True)
    return (a * b + a).sum(), {"a": a, "b": b}


def test_dot_has_the_nodes_and_edges_of_a_known_graph():
    y, params = known_graph()
    labels, edges = dot_graph(viz.to_dot(y, params=params))
    assert sorted(labels.values()) == sorted(
        ["output ()", "SumBackward", "AddBackward", "MulBackward", "a (3)", "b (3)"]
    )
    assert edges == {
        ("a (3)", "MulBackward", False),
        ("b (3)", "MulBackward", False),
        ("MulBackward", "AddBackward", False),
        ("a (3)", "AddBackward", False),
        ("AddBackward", "SumBackward", False),
        ("SumBackward", "output ()", False),
    }
    text = viz.to_dot(y)
    assert text.startswith("digraph {") and 'label="(3)" fillcolor=lightblue' in text


def test_mermaid_has_the_same_graph():
    y, params = known_graph()
    text = viz.to_mermaid(y, params=params)
    assert text.startswith("flowchart TB\n")
    found = re.findall(r'^  (\w+)\["(.*?)"\]', text, re.M)
    labels = {n: label.replace("<br/>", " ") for n, label in found}
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^  (\w+) --> (\w+)$", text, re.M)}
    assert ("a (3)", "MulBackward") in edges and ("a (3)", "AddBackward") in edges
    assert ("SumBackward", "output ()") in edges and len(edges) == 6
    assert re.search(r'\["a<br/>\(3\)"\]:::leaf', text)


def test_saved_tensors_and_model_parameters():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    y = model(dg.randn(2, 4)).sum()
    labels, edges = dot_graph(viz.to_dot(y, params=dict(model.named_parameters()), show_saved=True))
    assert ("0.weight (3, 4)", "LinearBackward", False) in edges
    assert ("saved[0] (2, 3) float32", "TanhBackward", True) in edges  # tanh saves its output
    y.backward()  # frees what was saved
    assert "saved[" not in viz.to_dot(y, show_saved=True)


def test_tensors_without_history_and_several_roots():
    x = dg.randn(2, 2)
    assert dot_graph(viz.to_dot(x))[0] == {"n0": "output (2, 2)"}
    w = dg.randn(2, requires_grad=True)
    labels, edges = dot_graph(viz.to_dot((w * 2, w.exp())))
    assert sorted(labels.values()) == [
        "(2)",
        "ExpBackward",
        "MulBackward",
        "output (2)",
        "output (2)",
    ]
    with pytest.raises(TypeError, match="expected a Tensor"):
        viz.to_dot([1, 2])


def test_render_without_graphviz_raises(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Graphviz's `dot`"):
        viz.render(known_graph()[0], tmp_path / "g.png")
    with pytest.raises(ValueError, match="'png' or 'svg'"):
        viz.render(known_graph()[0], tmp_path / "g.pdf")


@needs_dot
def test_render_png_and_svg(tmp_path):
    y, params = known_graph()
    png = viz.render(y, tmp_path / "g.png", params=params)
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = viz.render(y, tmp_path / "graph", format="svg", params=params)
    assert "<svg" in Path(svg).read_text() and "MulBackward" in Path(svg).read_text()


@pytest.mark.multiprocess
def test_visualize_example_writes_graph_and_loss_curve(tmp_path):
    pytest.importorskip("sklearn")
    mpijob.run_python(
        os.path.join(ROOT, "examples", "visualize_graph.py"),
        "--out",
        tmp_path,
        "--epochs",
        2,
        timeout=120,
    ).check()
    assert "CrossEntropyBackward" in (tmp_path / "graph.dot").read_text()
    assert "0.weight" in (tmp_path / "graph.mmd").read_text()
    if shutil.which("dot"):
        assert (tmp_path / "graph.png").stat().st_size > 1000
        assert (tmp_path / "graph.svg").exists()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "loss.png").stat().st_size > 1000
