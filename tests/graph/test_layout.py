"""The layered layout: rows follow the edges, boxes never overlap, cycles and fan-outs stay bounded."""


import itertools

import pytest
from fixtures.graph_files import transformer_edges

from airlock.core.errors import Cancelled
from airlock.core.graph.layout import DUMMY_GAP, LANE_GAP, NODE_GAP, layered_layout, topological_order


def lay(count, edges, width=100.0, height=30.0, **options):
    return layered_layout(count, edges, [width] * count, [height] * count, **options)


def assert_no_overlap(layout, widths):
    # two boxes side by side keep NODE_GAP; with an edge passing between them, DUMMY_GAP each side
    clearance = min(NODE_GAP, 2 * DUMMY_GAP)
    for row in layout.layers:
        xs = [(layout.x[v], widths[v]) for v in row]
        for (x1, w1), (x2, w2) in itertools.pairwise(xs):
            assert x2 - x1 >= (w1 + w2) / 2 + clearance - 1e-6, (row, xs)


def test_empty_and_single():
    assert lay(0, []).x == []
    one = lay(1, [])
    assert one.x == [50.0] and one.layers == [[0]] and one.width == 100.0


def test_rows_follow_the_edges_and_edges_run_downwards():
    # a diamond with a tail: 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3, 3 -> 4
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]
    layout = lay(5, edges)
    assert layout.layer == [0, 1, 1, 2, 3]
    assert layout.layers[1] in ([1, 2], [2, 1])
    for (a, b), points in zip(edges, layout.edges):
        assert points[0] == (layout.x[a], layout.y[a] + 15.0)  # leaves the source's bottom
        assert points[-1] == (layout.x[b], layout.y[b] - 15.0)  # enters the target's top
        assert all(p[1] < q[1] for p, q in itertools.pairwise(points))
    assert layout.crossings == 0
    assert_no_overlap(layout, [100.0] * 5)


def test_a_long_edge_bends_once_per_row_it_passes():
    edges = [(0, 1), (1, 2), (2, 3), (0, 3)]
    layout = lay(4, edges)
    assert layout.dummies == 2
    skip = layout.edges[3]
    assert len(skip) == 4  # start, two bend points, end
    bends = skip[1:-1]
    for (x, y), row in zip(bends, (1, 2)):
        assert y == layout.layer_top[row] + layout.layer_height[row] / 2
        # the bend point keeps clear of the box it passes
        box = layout.layers[row][0]
        assert abs(x - layout.x[box]) >= 50.0 + DUMMY_GAP - 1e-6


def test_sources_sit_just_above_their_first_consumer():
    # 0 -> 1 -> 2 -> 3 -> 4, and a constant 5 read only by 4
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (5, 4)]
    layout = lay(6, edges)
    assert layout.layer[5] == layout.layer[4] - 1
    assert layout.dummies == 0


def test_ordering_removes_avoidable_crossings():
    # sources 0, 1; 0 feeds 3, 1 feeds 2: in index order the two edges cross
    edges = [(0, 3), (1, 2), (0, 4), (1, 5)]
    layout = lay(6, edges)
    assert layout.crossings == 0
    row = layout.layers[1]
    assert row.index(3) < row.index(2) if layout.layers[0] == [0, 1] else row.index(2) < row.index(3)


def test_cycles_and_self_loops_are_laid_out_not_refused():
    edges = [(0, 1), (1, 2), (2, 0), (2, 2), (2, 3)]
    layout = lay(4, edges)
    assert layout.reversed == [2]  # 2 -> 0 points backwards in the order
    assert layout.edges[3] == []  # a self-loop has no path in a layered drawing
    back = layout.edges[2]
    assert back[0][1] < back[-1][1] or back[0] != back[-1]
    assert back[0][0] == layout.x[2] and back[-1][0] == layout.x[0]  # still drawn from 2 to 0
    assert sorted(v for row in layout.layers for v in row) == [0, 1, 2, 3]


def test_topological_order_keeps_the_files_order_and_appends_cycles():
    assert topological_order(4, [(0, 1), (1, 2), (2, 3)]) == [0, 1, 2, 3]
    assert topological_order(4, [(2, 3), (3, 2), (0, 1)]) == [0, 1, 2, 3]


def test_a_fan_out_over_the_whole_graph_goes_along_a_lane_not_through_bend_points():
    count, edges = transformer_edges(600)
    layout = lay(count, edges)
    mask_edges = [e for e, (a, _b) in enumerate(edges) if a == 1]
    long = [e for e in mask_edges if e in set(layout.long_edges)]
    assert long, "the mask's far consumers are long edges"
    lanes = {layout.edges[e][2][0] for e in long}
    assert len(lanes) == 1  # one lane per source
    (lane,) = lanes
    assert lane <= min(layout.x[v] - 50.0 for v in range(count)) - LANE_GAP + 1e-6 or \
        lane >= max(layout.x[v] + 50.0 for v in range(count)) + LANE_GAP - 1e-6
    for e in long:
        points = layout.edges[e]
        assert [p[0] for p in points[2:4]] == [lane, lane]  # down the lane
        assert points[-1] == (layout.x[edges[e][1]], layout.y[edges[e][1]] - 15.0)
    assert layout.dummies <= 3 * count + 1000


def test_dummy_budget_is_a_hard_cap():
    count, edges = transformer_edges(600)
    layout = lay(count, edges, max_dummies=10)
    assert layout.dummies <= 10
    assert all(layout.edges[e] for e, (a, b) in enumerate(edges) if a != b)


def test_five_thousand_nodes_laid_out_without_overlap_and_without_drifting():
    count, edges = transformer_edges(5000)
    widths = [80.0 + (v % 7) * 20 for v in range(count)]
    layout = layered_layout(count, edges, widths, [30.0] * count)
    assert count >= 5000
    assert len(layout.x) == count and all(layout.edges[e] for e in range(len(edges)))
    assert_no_overlap(layout, widths)
    for a, b in edges:
        assert layout.layer[a] < layout.layer[b]
    # a long chain of lopsided blocks must not walk off sideways: the drawing stays a column
    widest_row = max(sum(widths[v] for v in row) + NODE_GAP * len(row) for row in layout.layers)
    assert layout.width < 6 * widest_row, (layout.width, widest_row)


def test_rows_between_finds_the_visible_rows():
    layout = lay(5, [(0, 1), (1, 2), (2, 3), (3, 4)])
    top = layout.layer_top
    assert list(layout.rows_between(top[1] + 1, top[2] + 1)) == [1, 2]
    assert list(layout.rows_between(-100, -50)) == []
    assert list(layout.rows_between(0, 1e9)) == [0, 1, 2, 3, 4]


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="outside"):
        lay(2, [(0, 5)])
    with pytest.raises(ValueError, match="one width"):
        layered_layout(2, [], [1.0], [1.0, 1.0])


def test_cancelled_stops_the_layout():
    count, edges = transformer_edges(2000)
    with pytest.raises(Cancelled):
        lay(count, edges, cancelled=lambda: True)
