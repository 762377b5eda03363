"""TorchScript archives: forward() read from the archive's code/ text as a data-flow graph (never
through torch), risky calls marked."""

import io
import warnings

import pytest
import torch
from fixtures import torchscript_files as TSF

from airlock.core.findings import Severity
from airlock.core.graph import graph_sources
from airlock.core.graph.model import CUSTOM, INPUT, OP, OUTPUT
from airlock.core.scan import scan_bytes


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.conv(x)).mean((2, 3))
        return torch.softmax(self.head(y) + y[:, :4], dim=-1)


def _saved(module) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates scripting and tracing
        torch.jit.save(module, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def traced():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.trace(Block().eval(), torch.zeros(1, 3, 8, 8))
    return scan_bytes(_saved(module), "block.pt")


def _edge_titles(graph):
    return {(graph.nodes[a].title, graph.nodes[b].title) for a, b in graph.edges}


def test_a_traced_module_becomes_its_forward_data_flow(traced):
    assert traced.format == "torchscript"
    sources = graph_sources(traced.root)
    assert sources[0].title == "Block"  # the top module first, its submodules after
    assert {s.title for s in sources[1:]} == {"Conv2d", "Linear"}
    graph = sources[0].build()
    ops = [n.title for n in graph.nodes if n.kind == OP]
    assert sorted(ops) == sorted(["Conv2d", "relu", "mean", "Linear", "slice", "slice", "add", "softmax"])
    edges = _edge_titles(graph)
    assert {("x", "Conv2d"), ("Conv2d", "relu"), ("relu", "mean"), ("mean", "Linear"), ("Linear", "add"),
            ("add", "softmax"), ("softmax", "return")} <= edges
    assert [n.kind for n in graph.nodes].count(INPUT) == 1 and [n.kind for n in graph.nodes].count(OUTPUT) == 1
    mean = next(n for n in graph.nodes if n.title == "mean")
    assert mean.name == "torch.mean" and mean.rows == ["[2, 3]"]  # constant arguments are rows
    conv = next(n for n in graph.nodes if n.title == "Conv2d")
    assert conv.name == "conv.forward" and conv.category == "layer"
    assert graph.locate(conv) is sources[0].node and sources[0].node.kind == "text"
    assert graph.risky() == []


def test_a_submodules_weights_are_rows_of_its_call(traced):
    linear = next(s for s in graph_sources(traced.root) if s.title == "Linear").build()
    (call,) = [n for n in linear.nodes if n.kind == OP]
    assert call.title == "linear" and call.rows == ["weight", "bias"]
    assert str(next(s for s in graph_sources(traced.root) if s.title == "Linear")) == \
        "forward() of Linear: see the Graph tab"


def test_a_call_the_scan_rated_high_is_marked():
    data = TSF.hostile()["reads_a_file.pt"]
    result = scan_bytes(data, "m.pt")
    finding = next(f for f in result.findings if f.rule == "TS002")
    boxes = [n for s in graph_sources(result.root) for n in s.build().nodes]
    marked = [n for n in boxes if n.severity == Severity.HIGH]
    assert [n.title for n in marked] == ["from_file"]
    assert marked[0].reasons == [finding.message]


def test_a_custom_operator_namespace_is_marked():
    torch.library.define("airlock_graph::twice", "(Tensor x) -> Tensor")

    @torch.library.impl("airlock_graph::twice", "cpu")
    def _twice(x):
        return x * 2

    class UsesOp(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.airlock_graph.twice(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scan_bytes(_saved(torch.jit.script(UsesOp())), "m.pt")
    (source,) = graph_sources(result.root)
    (box,) = [n for n in source.build().nodes if n.kind == OP]
    assert box.title == "ops.airlock_graph.twice" and CUSTOM in box.marks and box.severity == Severity.MEDIUM


def test_code_that_does_not_parse_gives_an_empty_graph_with_a_note(traced):
    source = graph_sources(traced.root)[0]
    node = source.node
    saved = node.attrs["text"]
    try:
        node.attrs["text"] = "class Broken(Module):\n  def forward(self, x):\n    return (\n"
        graph = source.build()
    finally:
        node.attrs["text"] = saved
    assert graph.nodes == [] and graph.note.startswith("the code does not parse as Python")
