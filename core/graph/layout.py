"""A layered (Sugiyama-style) layout of a directed graph, in pure Python.

Why our own and not a library: grandalf (the pure-Python Sugiyama layout) had its last release in
January 2023 and took minutes on a 5,000-operator graph here; igraph's `layout_sugiyama` is fast but
brings a native library and its own graph object for one function; networkx has no layered layout.
The steps below are the textbook ones, each linear or n·log n, and lay out 5,000 operators in well
under a second (`benchmarks/run.py --only graph`):

1. cycles broken by reversing the edges that point backwards in a topological order (hostile
   files can have cycles; a well-formed ONNX graph has none);
2. longest-path layering, then each source pulled down to just above its first consumer (so a
   Constant sits next to the operator that reads it, not in the first row);
3. edges spanning several layers get one bend point ("dummy") per layer, shortest first, up to
   `MAX_SPAN` layers and a budget; longer ones (an attention mask read by every block of a
   transformer) are routed along a vertical lane beside the graph, one lane per source, so a
   fan-out over thousands of layers adds no dummies and crosses no box;
4. barycenter ordering, a few down/up sweeps, keeping the order with the fewest crossings;
5. x by weighted isotonic regression per layer (the pool-adjacent-violators algorithm): each node
   as close as the order and the spacing allow to the mean of its neighbours, sweeps down and up.

Everything is in abstract units (the GUI passes box sizes in pixels at zoom 1). `cancelled` is
polled inside every loop that grows with the graph.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence

from airlock.core.errors import Cancelled

NODE_GAP = 28.0  # horizontal space between two boxes
DUMMY_GAP = 10.0  # between an edge's bend point and its neighbours
LAYER_GAP = 44.0  # vertical space between two rows
ORDER_SWEEPS = 8
PLACE_SWEEPS = 6
CENTRE_PULL = 0.05
DUMMY_WEIGHT = 0.5  # where a box and a bend point want one place, the box gets it
MAX_SPAN = 24  # layers an edge may span and still get bend points
LANE_GAP = 14.0  # between two lanes of long edges

Point = tuple[float, float]


class Layout:
    """Where each node and edge goes. Node coordinates are box centres; y grows downwards."""

    __slots__ = ("crossings", "dummies", "edge_layers", "edges", "height", "layer", "layer_height",
                 "layer_top", "layers", "long_edges", "reversed", "width", "x", "y")

    def __init__(self) -> None:
        self.x: list[float] = []
        self.y: list[float] = []
        self.layer: list[int] = []
        self.layers: list[list[int]] = []  # real nodes of each row, left to right
        self.layer_top: list[float] = []
        self.layer_height: list[float] = []
        self.edges: list[list[Point]] = []  # per input edge: from the source's bottom to the target's top
        self.edge_layers: list[tuple[int, int]] = []  # first and last row an edge touches
        self.long_edges: list[int] = []  # routed along a lane beside the graph
        self.reversed: list[int] = []  # edges turned round to break a cycle (drawn as given)
        self.width = 0.0
        self.height = 0.0
        self.crossings = 0
        self.dummies = 0

    def rows_between(self, top: float, bottom: float) -> range:
        """Indices of the rows that overlap the band top..bottom (binary search)."""
        import bisect

        ends = [t + h for t, h in zip(self.layer_top, self.layer_height, strict=True)]
        first = bisect.bisect_left(ends, top)
        last = bisect.bisect_right(self.layer_top, bottom)
        return range(first, max(first, last))


def _poll(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("layout cancelled")


def topological_order(count: int, edges: Sequence[tuple[int, int]],
                      cancelled: Callable[[], bool] | None = None) -> list[int]:
    """Kahn's algorithm, lowest index first (keeps a file's own order where it is already sorted);
    nodes on cycles follow in index order."""
    succ: list[list[int]] = [[] for _ in range(count)]
    indeg = [0] * count
    for a, b in edges:
        if a != b:
            succ[a].append(b)
            indeg[b] += 1
    heap = [v for v in range(count) if indeg[v] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        v = heapq.heappop(heap)
        order.append(v)
        if len(order) % 4096 == 0:
            _poll(cancelled)
        for w in succ[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                heapq.heappush(heap, w)
    if len(order) < count:
        placed = set(order)
        order.extend(v for v in range(count) if v not in placed)
    return order


def layered_layout(count: int, edges: Sequence[tuple[int, int]], widths: Sequence[float],
                   heights: Sequence[float], *, cancelled: Callable[[], bool] | None = None,
                   max_dummies: int | None = None, max_span: int = MAX_SPAN) -> Layout:
    if len(widths) != count or len(heights) != count:
        raise ValueError("one width and one height per node")
    for a, b in edges:
        if not (0 <= a < count and 0 <= b < count):
            raise ValueError(f"edge {a}->{b} names a node outside 0..{count - 1}")
    out = Layout()
    order = topological_order(count, edges, cancelled)
    pos = [0] * count
    for i, v in enumerate(order):
        pos[v] = i
    # The layout's edges all point forwards in `order`; self-loops are left out of it.
    dag: list[tuple[int, int, int]] = []  # (from, to, input edge index)
    for e, (a, b) in enumerate(edges):
        if a == b:
            continue
        if pos[a] > pos[b]:
            out.reversed.append(e)
            a, b = b, a
        dag.append((a, b, e))
    layer = _layering(count, dag, order, cancelled)

    # Bend points ("dummies"), shortest edges first, within the budget.
    n_virtual = count
    vlayer = list(layer)
    vwidth = [float(w) for w in widths]
    up: list[list[int]] = [[] for _ in range(count)]
    down: list[list[int]] = [[] for _ in range(count)]
    chains: dict[int, list[int]] = {}
    budget = 3 * count + 1000 if max_dummies is None else max(0, max_dummies)
    for a, b, e in sorted(dag, key=lambda t: layer[t[1]] - layer[t[0]]):
        span = layer[b] - layer[a]
        if span > 1 and (span > max_span or span - 1 > budget):
            out.long_edges.append(e)
            chains[e] = [a, b]
            continue
        chain = [a]
        for k in range(layer[a] + 1, layer[b]):
            vlayer.append(k)
            vwidth.append(0.0)
            up.append([])
            down.append([])
            chain.append(n_virtual)
            n_virtual += 1
        chain.append(b)
        budget -= span - 1
        for u, w in itertools.pairwise(chain):
            down[u].append(w)
            up[w].append(u)
        chains[e] = chain
        if n_virtual % 4096 == 0:
            _poll(cancelled)
    out.dummies = n_virtual - count

    rows = _initial_rows(vlayer, order, count, up)
    rows, out.crossings = _order(rows, up, down, cancelled)
    xs = _place(rows, up, down, vwidth, count, cancelled)

    # Rows: height of the tallest box, top of each row.
    n_rows = len(rows)
    row_height = [0.0] * n_rows
    for v in range(count):
        row_height[layer[v]] = max(row_height[layer[v]], float(heights[v]))
    tops = []
    y = 0.0
    for h in row_height:
        tops.append(y)
        y += h + LAYER_GAP
    out.height = max(0.0, y - LAYER_GAP)
    # Lanes for long edges, one per source, left of the graph or right of it (the nearer side).
    min_x = min((xs[v] - vwidth[v] / 2 for v in range(n_virtual)), default=0.0)
    max_x = max((xs[v] + vwidth[v] / 2 for v in range(n_virtual)), default=0.0)
    lane_of: dict[int, float] = {}
    left = right = 0
    for e in out.long_edges:
        a = chains[e][0]
        if a not in lane_of:
            ends = [xs[v] for v in chains[e]]
            if sum(ends) / len(ends) <= (min_x + max_x) / 2:
                left += 1
                lane_of[a] = min_x - left * LANE_GAP
            else:
                right += 1
                lane_of[a] = max_x + right * LANE_GAP
    min_x -= left * LANE_GAP + (LANE_GAP if left else 0.0)
    max_x += right * LANE_GAP + (LANE_GAP if right else 0.0)
    out.width = max_x - min_x
    out.x = [xs[v] - min_x for v in range(count)]
    out.y = [tops[layer[v]] + row_height[layer[v]] / 2 for v in range(count)]
    out.layer = layer
    out.layers = [[v for v in row if v < count] for row in rows]
    out.layer_top = tops
    out.layer_height = row_height

    flipped = set(out.reversed)
    out.edges = [[] for _ in edges]
    out.edge_layers = [(0, 0)] * len(edges)
    for e, chain in chains.items():
        points: list[Point] = []
        for i, v in enumerate(chain):
            vx = xs[v] - min_x
            if v < count:
                half = float(heights[v]) / 2
                points.append((vx, out.y[v] + (half if i == 0 else -half)))
            else:
                row = vlayer[v]
                points.append((vx, tops[row] + row_height[row] / 2))
        if len(chain) == 2 and chain[0] in lane_of and layer[chain[1]] - layer[chain[0]] > 1:
            lane = lane_of[chain[0]] - min_x
            (ax, ay), (bx, by) = points
            out_y, in_y = ay + LAYER_GAP / 2, by - LAYER_GAP / 2
            points = [(ax, ay), (ax, out_y), (lane, out_y), (lane, in_y), (bx, in_y), (bx, by)]
        if e in flipped:
            points.reverse()
        out.edges[e] = points
        rows_of = (layer[chain[0]], layer[chain[-1]])
        out.edge_layers[e] = (min(rows_of), max(rows_of))
    return out


def _layering(count: int, dag: list[tuple[int, int, int]], order: list[int],
              cancelled: Callable[[], bool] | None) -> list[int]:
    succ: list[list[int]] = [[] for _ in range(count)]
    has_pred = [False] * count
    for a, b, _e in dag:
        succ[a].append(b)
        has_pred[b] = True
    layer = [0] * count
    for i, v in enumerate(order):
        if i % 4096 == 0:
            _poll(cancelled)
        next_layer = layer[v] + 1
        for w in succ[v]:
            if layer[w] < next_layer:
                layer[w] = next_layer
    for v in order:
        if not has_pred[v] and succ[v]:
            layer[v] = min(layer[w] for w in succ[v]) - 1
    return layer


def _initial_rows(vlayer: list[int], order: list[int], count: int, up: list[list[int]]) -> list[list[int]]:
    """Rows in a first order: real nodes by their topological position, bend points after their
    source; the first sweep of `_order` then sorts every row by its parents."""
    rank = [0.0] * len(vlayer)
    for i, v in enumerate(order):
        rank[v] = float(i)
    n_rows = max(vlayer, default=-1) + 1
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    for v in range(len(vlayer)):
        rows[vlayer[v]].append(v)
    for v in range(count, len(vlayer)):
        rank[v] = rank[up[v][0]] + 0.5 if up[v] else 0.0
    # bend points were created row by row along their chain, so their parents are ranked first
    for row in rows:
        row.sort(key=rank.__getitem__)
    return rows


def _order(rows: list[list[int]], up: list[list[int]], down: list[list[int]],
           cancelled: Callable[[], bool] | None) -> tuple[list[list[int]], int]:
    pos = [0.0] * len(up)
    for row in rows:
        for i, v in enumerate(row):
            pos[v] = float(i)
    best = [list(r) for r in rows]
    best_crossings = _crossings(rows, down, pos)
    stale = 0
    for sweep in range(ORDER_SWEEPS):
        downwards = sweep % 2 == 0
        span = range(1, len(rows)) if downwards else range(len(rows) - 2, -1, -1)
        links = up if downwards else down
        for r in span:
            _poll(cancelled)
            row = rows[r]
            keys = {}
            for v in row:
                near = links[v]
                keys[v] = sum(pos[u] for u in near) / len(near) if near else pos[v]
            row.sort(key=keys.__getitem__)
            for i, v in enumerate(row):
                pos[v] = float(i)
        crossings = _crossings(rows, down, pos)
        if crossings < best_crossings:
            best, best_crossings, stale = [list(r) for r in rows], crossings, 0
        else:
            stale += 1
            if stale >= 3 or best_crossings == 0:
                break
    return best, best_crossings


def _crossings(rows: list[list[int]], down: list[list[int]], pos: list[float]) -> int:
    """Edge crossings between consecutive rows: inversions counted with a Fenwick tree."""
    total = 0
    for r in range(len(rows) - 1):
        size = len(rows[r + 1])
        if size < 2:
            continue
        targets: list[int] = []
        for v in rows[r]:
            targets.extend(sorted(int(pos[w]) for w in down[v]))
        tree = [0] * (size + 1)
        for seen, t in enumerate(targets):
            # edges already seen that end right of t cross this one
            i, below = t + 1, 0
            while i > 0:
                below += tree[i]
                i -= i & -i
            total += seen - below
            i = t + 1
            while i <= size:
                tree[i] += 1
                i += i & -i
    return total


def _place(rows: list[list[int]], up: list[list[int]], down: list[list[int]], width: list[float],
           count: int, cancelled: Callable[[], bool] | None) -> list[float]:
    x = [0.0] * len(up)
    offsets: list[list[float]] = []
    for row in rows:
        offs, at, prev = [], 0.0, None
        for v in row:
            if prev is not None:
                gap = NODE_GAP if prev < count and v < count else DUMMY_GAP
                at += (width[prev] + width[v]) / 2 + gap
            offs.append(at)
            prev = v
        offsets.append(offs)
        centre = at / 2
        for v, off in zip(row, offs, strict=True):
            x[v] = off - centre
    for sweep in range(PLACE_SWEEPS):
        last = sweep == PLACE_SWEEPS - 1
        downwards = sweep % 2 == 0
        span = range(len(rows)) if downwards else range(len(rows) - 1, -1, -1)
        for r in span:
            _poll(cancelled)
            row, offs = rows[r], offsets[r]
            targets, weights = [], []
            for v, off in zip(row, offs, strict=True):
                near = up[v] + down[v] if last else (up[v] if downwards else down[v])
                if v < count:
                    # A box follows the boxes it joins, not the bend points of edges passing by:
                    # otherwise each residual join drifts the next block sideways.
                    near = [u for u in near if u < count] or near
                if near:
                    # a slight pull to the middle line keeps a long chain of lopsided blocks
                    # (a transformer's) from drifting off sideways, block after block
                    want = sum(x[u] for u in near) / (len(near) + CENTRE_PULL)
                    weight = DUMMY_WEIGHT if v >= count else 1.0
                else:
                    want, weight = x[v], 0.05
                targets.append(want - off)
                weights.append(weight)
            for v, off, z in zip(row, offs, _isotonic(targets, weights), strict=True):
                x[v] = z + off
    return x


def _isotonic(targets: list[float], weights: list[float]) -> list[float]:
    """The non-decreasing sequence closest to `targets` in weighted least squares (PAVA)."""
    values: list[float] = []
    mass: list[float] = []
    sizes: list[int] = []
    for t, w in zip(targets, weights, strict=True):
        values.append(t)
        mass.append(w)
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            m = mass[-2] + mass[-1]
            v = (values[-2] * mass[-2] + values[-1] * mass[-1]) / m
            n = sizes[-2] + sizes[-1]
            values.pop()
            mass.pop()
            sizes.pop()
            values[-1], mass[-1], sizes[-1] = v, m, n
    out: list[float] = []
    for v, n in zip(values, sizes, strict=True):
        out.extend([v] * n)
    return out
