"""The interpreter behind torchscript_triggers.py: does a forward() return constants on a trigger?

Each value is DATA (depends on the input's values), SHAPE (on its shapes only) or CONST, with its
number when known; a comparison of a narrow probe of an input with a constant is TRUE or FALSE under
a hypothesis. Statements run in order; an undecided `if` runs both ways and merges, a decided one
only its branch; a loop body runs once and merges. Each value carries the lines it flows from, the
probes and comparisons it depends on, and the line of the where/if/blend that made it constant.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

DATA, SHAPE, CONST = "data", "shape", "const"
MAX_COMPARISONS = 16  # single-comparison hypotheses tried besides "all hold" and "none holds"

_COMPARE = {"eq": "==", "ne": "!=", "gt": ">", "lt": "<", "ge": ">=", "le": "<=", "greater": ">",
            "less": "<", "greater_equal": ">=", "less_equal": "<=", "equal": "=="}
_REDUCE = frozenset({"all", "any", "sum", "mean", "min", "max", "amin", "amax", "prod", "median", "norm"})
_PROBE = frozenset({"select", "slice", "narrow", "index_select", "gather", "take", "index", "__getitem__"})
_SHAPE_FNS = frozenset({"size", "dim", "numel", "len", "sym_size", "shape", "device", "dtype", "is_cuda"})
_ZERO_LIKE = frozenset({"zeros_like", "zeros", "new_zeros"})
_ONE_LIKE = frozenset({"ones_like", "ones", "new_ones"})
_FULL_LIKE = frozenset({"full_like", "full", "new_full"})
_MAKERS = frozenset({"tensor", "arange", "empty", "empty_like", "rand", "randn", "rand_like", "randn_like",
                     "linspace", "eye", "scalar_tensor", "as_tensor", "new_tensor", "new_empty"})
_NOT = frozenset({"logical_not", "bitwise_not", "__not__"})
_SCALAR = frozenset({"bool", "item", "Bool", "is_nonzero"})
_AND_OR = frozenset({"logical_and", "bitwise_and", "__and__", "logical_or", "bitwise_or", "__or__"})
# Calls that pass their first argument's value through, re-typed or reshaped.
_PASS = frozenset({"to", "float", "int", "long", "double", "half", "type_as", "unsqueeze", "squeeze",
                   "reshape",
                   "view", "expand", "expand_as", "flatten", "contiguous", "clone", "detach", "view_as",
                   "reshape_as", "permute", "transpose", "t", "Float", "Int", "annotate", "_unwrap_optional",
                   "broadcast_to"})
_FULL_SLICE = 9223372036854775807  # what tracing writes for an open end


class _V:
    """One abstract value, and where it came from."""

    __slots__ = ("alias", "cmps", "decided", "kind", "lines", "num", "probes", "via")

    def __init__(self, kind: str, num: float | None = None, *, lines: frozenset[int] = frozenset(),
                 probes: frozenset[int] = frozenset(), cmps: frozenset[int] = frozenset(),
                 via: int | None = None, decided: bool = False) -> None:
        self.kind = kind
        self.num = num  # the constant's value when known (a decided comparison: 1 or 0)
        self.lines = lines  # statement lines the value flows from
        self.probes = probes  # lines of narrow probes of an input on its way
        self.cmps = cmps  # comparisons (by id) it depends on
        self.via = via  # line of the where/if/blend that made it constant under the hypothesis
        self.decided = decided  # reduced to one decision (all/any/bool/if), not an elementwise mask
        self.alias: _V | None = None  # `x * t` under t = 1 is x itself: `x - x * t` cancels (the blend)

    def but(self, **changes: object) -> _V:
        new = _V(self.kind, self.num, lines=self.lines, probes=self.probes, cmps=self.cmps, via=self.via,
                 decided=self.decided)
        for key, value in changes.items():
            setattr(new, key, value)
        return new


def _join(values: list[_V], line: int, kind: str | None = None) -> _V:
    """A value computed from `values` by an operation Airlock does not model."""
    if kind is None:
        kinds = {v.kind for v in values}
        kind = DATA if DATA in kinds else SHAPE if SHAPE in kinds else CONST
    lines = frozenset({line}).union(*(v.lines for v in values))
    via = next((v.via for v in values if v.via is not None), None) if kind != DATA else None
    return _V(kind, None, lines=lines, probes=frozenset().union(*(v.probes for v in values)),
              cmps=frozenset().union(*(v.cmps for v in values)), via=via,
              decided=any(v.decided for v in values))


def _merge(a: _V | None, b: _V | None) -> _V | None:
    """Either may hold (two branches of an undecided if)."""
    if a is None or b is None:
        return a if b is None else b
    kind = DATA if DATA in (a.kind, b.kind) else a.kind if a.kind == b.kind else CONST
    num = a.num if a.kind == b.kind == CONST and a.num == b.num else None
    return _V(kind, num, lines=a.lines | b.lines, probes=a.probes | b.probes, cmps=a.cmps | b.cmps,
              via=(a.via or b.via) if kind != DATA else None, decided=a.decided or b.decided)


class Comparison:
    __slots__ = ("constant", "line", "op", "point", "probes", "subject")

    def __init__(self, line: int, op: str, constant: str, probes: frozenset[int],
                 subject: frozenset[int], point: bool) -> None:
        self.line = line
        self.op = op
        self.constant = constant
        self.probes = probes
        self.subject = subject  # lines the compared data flows from
        self.point = point  # the probe picks single elements (a token, a pixel), not a range


class Found:
    __slots__ = ("comparisons", "hypothesis", "lines", "override", "probes")

    def __init__(self, override: int, comparisons: list[Comparison], probes: list[int], lines: list[int],
                 hypothesis: str) -> None:
        self.override = override
        self.comparisons = comparisons
        self.probes = probes
        self.lines = lines
        self.hypothesis = hypothesis


def _callee(func: ast.expr) -> tuple[str, ast.expr | None]:
    """(last name, receiver) of a call: `torch.gt(...)` → ("gt", None); `x.float()` → ("float", x)."""
    if isinstance(func, ast.Name):
        return func.id, None
    if isinstance(func, ast.Attribute):
        base = func.value
        while isinstance(base, ast.Attribute):
            base = base.value
        if isinstance(base, ast.Name) and base.id in ("torch", "ops", "math", "F", "aten", "prim"):
            return func.attr, None
        return func.attr, func.value
    return "", None


def _number(node: ast.expr) -> float | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    return None


def _narrow_index(index: ast.expr) -> bool:
    """`x[0]`, `x[:, 0:2]`: picks part of the tensor (not `x[:, None, :]`, which only reshapes)."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    for p in parts:
        if isinstance(p, ast.Slice):
            if (p.lower is not None and _number(p.lower) not in (None, 0.0)) or (
                    p.upper is not None and _number(p.upper) is not None):
                return True
        elif _number(p) is not None:
            return True
    return False


def _point_index(index: ast.expr) -> bool:
    """`x[0]`, `x[:, -1]`: picks single elements along some axis (an integer index)."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    return any(not isinstance(p, ast.Slice) and _number(p) is not None for p in parts)


def _narrow_call(name: str, args: list[ast.expr]) -> bool:
    """torch.select always picks; torch.slice only with a bounded end; narrow/gather/index_select pick."""
    if name == "slice":
        numbers = [_number(a) for a in args[1:]]
        end = numbers[2] if len(numbers) > 2 else None
        start = numbers[1] if len(numbers) > 1 else None
        return (end is not None and end < _FULL_SLICE) or (start is not None and start != 0)
    return name in ("select", "narrow", "index_select", "gather", "take")


class _Interpreter:
    """One forward(): run under no hypothesis (collecting comparisons), then under each hypothesis."""

    def __init__(self, fn: ast.FunctionDef, tick: Callable[[], None]) -> None:
        self.fn = fn
        self.tick = tick
        args = fn.args.args
        self.self_name = args[0].arg if args else "self"
        self.inputs = [a.arg for a in args[1:]]
        self.comparisons: dict[int, Comparison] = {}
        self.assumed: dict[int, bool] | None = None
        self.kept: dict[int, frozenset[int]] = {}  # override line → lines of the data it switched off
        self.points: set[int] = set()  # lines that pick single elements of an input (x[0], select)
        self._env: dict[str, _V] = {}

    def run(self) -> _V | None:
        env = {name: _V(DATA, lines=frozenset()) for name in self.inputs}
        _env, returns = self._block(self.fn.body, env)
        out: _V | None = None
        for r in returns:
            out = _merge(out, r)
        return out

    # Statements: (environment after, or None when every path returned; values returned)

    def _block(self, body: list[ast.stmt], env: dict[str, _V]) -> tuple[dict[str, _V] | None, list[_V]]:
        returns: list[_V] = []
        for stmt in body:
            self.tick()
            self._env = env
            if isinstance(stmt, ast.Return):
                returns.append(self._expr(stmt.value, stmt.lineno) if stmt.value is not None else _V(CONST))
                return None, returns
            if isinstance(stmt, ast.Assign):
                value = self._expr(stmt.value, stmt.lineno)
                for target in stmt.targets:
                    self._bind(target, value, env)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                self._bind(stmt.target, self._expr(stmt.value, stmt.lineno), env)
            elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
                old = env.get(stmt.target.id, _V(DATA))
                value = self._expr(stmt.value, stmt.lineno)
                env[stmt.target.id] = self._arith(type(stmt.op).__name__, [old, value], stmt.lineno)
            elif isinstance(stmt, ast.If):
                after, more = self._if(stmt, env)
                returns += more
                if after is None:
                    return None, returns
                env = after
            elif isinstance(stmt, (ast.For, ast.While)):
                self._bind_loop(stmt, env)
                inner, more = self._block(stmt.body, dict(env))
                returns += more
                if inner is not None:
                    env = {k: _merge(env.get(k), inner.get(k)) or inner[k] for k in env.keys() | inner.keys()}
            elif isinstance(stmt, (ast.With, ast.Try)):
                after, more = self._block(stmt.body, env)
                returns += more
                if after is None:
                    return None, returns
                env = after
        return env, returns

    def _if(self, stmt: ast.If, env: dict[str, _V]) -> tuple[dict[str, _V] | None, list[_V]]:
        test = self._expr(stmt.test, stmt.lineno)
        if test.kind == CONST and test.num is not None and test.cmps:  # decided by the hypothesis
            taken = stmt.body if test.num else stmt.orelse
            before = dict(env)
            after, returns = self._block(taken, dict(env))
            returns = [self._override(r, test, stmt.lineno) for r in returns]
            if after is not None:
                after = {k: (self._override(v, test, stmt.lineno) if before.get(k) is not v else v)
                         for k, v in after.items()}
            return after, returns
        yes, r1 = self._block(stmt.body, dict(env))
        no, r2 = self._block(stmt.orelse, dict(env))
        if yes is None or no is None:
            return (yes if no is None else no), r1 + r2
        merged = {k: _merge(yes.get(k), no.get(k)) for k in yes.keys() | no.keys()}
        return {k: v for k, v in merged.items() if v is not None}, r1 + r2

    @staticmethod
    def _override(v: _V, test: _V, line: int) -> _V:
        """A value chosen by a decided `if`: constant ones are now the override's doing."""
        if v.kind == DATA:
            return v
        return v.but(via=v.via if v.via is not None else line, lines=v.lines | test.lines | {line},
                     cmps=v.cmps | test.cmps, probes=v.probes | test.probes, decided=True)

    def _bind(self, target: ast.expr, value: _V, env: dict[str, _V]) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._bind(t, value, env)

    def _bind_loop(self, stmt: ast.For | ast.While, env: dict[str, _V]) -> None:
        if isinstance(stmt, ast.For):
            self._bind(stmt.target, self._expr(stmt.iter, stmt.lineno), env)

    # Expressions

    def _expr(self, node: ast.expr, line: int) -> _V:
        self.tick()
        if isinstance(node, ast.Constant):
            num = float(node.value) if isinstance(node.value, (bool, int, float)) else None
            return _V(CONST, num)
        if isinstance(node, ast.Name):
            if node.id == self.self_name:
                return _V(CONST)
            value = self._env.get(node.id)
            return value if value is not None else _V(DATA)
        if isinstance(node, ast.Attribute):
            base = self._expr(node.value, line)
            if node.attr in _SHAPE_FNS:
                return _join([base], line, SHAPE if base.kind != CONST else CONST)
            return base if base.kind != DATA else base.but(lines=base.lines | {line})
        if isinstance(node, ast.Subscript):
            base = self._expr(node.value, line)
            index = self._expr(node.slice, line)
            value = _join([base, index], line, base.kind)
            if base.kind == DATA and _narrow_index(node.slice):
                value.probes = value.probes | {line}
                if _point_index(node.slice):
                    self.points.add(line)
            return value
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            op = {ast.Eq: "==", ast.NotEq: "!=", ast.Gt: ">", ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<="}.get(
                type(node.ops[0]))
            left, right = self._expr(node.left, line), self._expr(node.comparators[0], line)
            if op is not None:
                return self._compare(node, op, left, right, node.comparators[0], node.left, line)
            return _join([left, right], line)
        if isinstance(node, ast.BoolOp):
            return self._logic([self._expr(v, line) for v in node.values], isinstance(node.op, ast.And), line)
        if isinstance(node, ast.UnaryOp):
            operand = self._expr(node.operand, line)
            if isinstance(node.op, ast.Not):
                return self._negate(operand, line)
            if isinstance(node.op, ast.USub) and operand.kind == CONST:
                return operand.but(num=None if operand.num is None else -operand.num)
            return operand
        if isinstance(node, ast.BinOp):
            operands = [self._expr(node.left, line), self._expr(node.right, line)]
            return self._arith(type(node.op).__name__, operands, line)
        if isinstance(node, ast.IfExp):
            return self._where(self._expr(node.test, line), self._expr(node.body, line),
                               self._expr(node.orelse, line), line)
        if isinstance(node, ast.Call):
            return self._call(node, line)
        if isinstance(node, (ast.Tuple, ast.List)):
            return _join([self._expr(e, line) for e in node.elts], line) if node.elts else _V(CONST)
        if isinstance(node, ast.Slice):
            parts = [self._expr(p, line) for p in (node.lower, node.upper, node.step) if p is not None]
            return _join(parts, line) if parts else _V(CONST)
        return _V(DATA, lines=frozenset({line}))

    def _call(self, node: ast.Call, line: int) -> _V:
        name, receiver = _callee(node.func)
        argv = ([receiver] if receiver is not None else []) + list(node.args)
        if name in _COMPARE and len(argv) >= 2:
            a, b = self._expr(argv[0], line), self._expr(argv[1], line)
            return self._compare(node, _COMPARE[name], a, b, argv[1], argv[0], line)
        if name == "where" and len(argv) == 3:
            c, a, b = (self._expr(x, line) for x in argv)
            return self._where(c, a, b, line)
        if name in ("masked_fill", "masked_fill_") and len(argv) == 3:
            x, c, v = (self._expr(a, line) for a in argv)
            return self._where(c, v, x, line)
        values = [self._expr(a, line) for a in argv] + [self._expr(k.value, line) for k in node.keywords]
        if receiver is not None and name == "forward":  # a submodule: its forward is judged on its own
            return _join(values[1:], line) if len(values) > 1 else _V(CONST, lines=frozenset({line}))
        if name in _SHAPE_FNS:
            return _join(values, line, SHAPE if any(v.kind != CONST for v in values) else CONST)
        if name in _ZERO_LIKE or name in _ONE_LIKE or name in _FULL_LIKE or name in _MAKERS:
            num = 0.0 if name in _ZERO_LIKE else 1.0 if name in _ONE_LIKE else (
                _number(argv[1]) if name in _FULL_LIKE and len(argv) > 1 else None)
            return _V(CONST, num, lines=frozenset({line}))
        if name in _NOT and values:
            return self._negate(values[0], line)
        if name in _AND_OR and len(values) == 2:
            return self._logic(values, "and" in name, line)
        if name in ("mul", "add", "sub", "rsub", "neg", "div") and values:
            op = {"mul": "Mult", "add": "Add", "sub": "Sub", "div": "Div"}.get(name, name)
            if name == "neg":
                v = values[0]
                return v.but(num=None if v.num is None else -v.num) if v.kind == CONST else v
            if name == "rsub" and len(values) >= 2:
                return self._arith("Sub", [values[1], values[0]], line)
            return self._arith(op, values[:2], line)
        if not values:
            return _V(CONST, lines=frozenset({line}))
        first = values[0]
        if name in _REDUCE or name in _SCALAR:
            out = _join(values, line, first.kind)
            if first.kind == CONST:
                out.num = first.num
            if first.kind == DATA and name in _REDUCE:
                out.probes = out.probes | {line}
            out.decided = True
            return out
        if name in _PROBE or name in _PASS:
            out = _join(values, line, first.kind)
            if first.kind == CONST:
                out.num = first.num
                out.via = first.via
            if first.kind == DATA and _narrow_call(name, argv):
                out.probes = out.probes | {line}
                if name in ("select", "index_select", "gather", "take"):
                    self.points.add(line)
            return out
        return _join(values, line)

    def _compare(self, node: ast.expr, op: str, a: _V, b: _V, b_node: ast.expr, a_node: ast.expr,
                 line: int) -> _V:
        if a.kind == CONST and b.kind == DATA:
            a, b, a_node, b_node = b, a, b_node, a_node
            op = {">": "<", "<": ">", ">=": "<=", "<=": ">="}.get(op, op)
        if a.kind == DATA and b.kind == CONST and a.probes:
            key = id(node)
            if key not in self.comparisons:
                constant = ast.unparse(b_node) if len(ast.unparse(b_node)) < 80 else "a constant"
                point = bool(a.probes & self.points)
                self.comparisons[key] = Comparison(line, op, constant, a.probes, a.lines, point)
            if self.assumed is not None and key in self.assumed:
                return _V(CONST, 1.0 if self.assumed[key] else 0.0, lines=a.lines | {line}, probes=a.probes,
                          cmps=frozenset({key}), decided=a.decided)
            return _V(DATA, lines=a.lines | {line}, probes=a.probes, cmps=frozenset({key}), decided=a.decided)
        return _join([a, b], line)

    def _negate(self, v: _V, line: int) -> _V:
        if v.kind == CONST and v.num is not None and v.cmps:
            return v.but(num=0.0 if v.num else 1.0, lines=v.lines | {line})
        return v.but(lines=v.lines | {line})

    def _logic(self, values: list[_V], conj: bool, line: int) -> _V:
        decided = [v for v in values if v.kind == CONST and v.num is not None and v.cmps]
        if len(decided) == len(values):
            truth = all(v.num for v in decided) if conj else any(v.num for v in decided)
            out = _join(values, line, CONST)
            out.num = 1.0 if truth else 0.0
            return out
        # One decided operand settles it: False and …, True or ….
        if any((not v.num) if conj else v.num for v in decided):
            out = _join(values, line, CONST)
            out.num = 0.0 if conj else 1.0
            return out
        return _join(values, line)

    def _where(self, c: _V, a: _V, b: _V, line: int) -> _V:
        if c.kind == CONST and c.num is not None and c.cmps:
            chosen, other = (a, b) if c.num else (b, a)
            out = chosen.but(lines=chosen.lines | c.lines | {line}, cmps=chosen.cmps | c.cmps,
                             probes=chosen.probes | c.probes, decided=chosen.decided or c.decided)
            if chosen.kind != DATA and other.kind == DATA and out.via is None:
                out.via = line
                self.kept[line] = other.lines
            return out
        return _join([c, a, b], line)

    def _arith(self, op: str, values: list[_V], line: int) -> _V:
        if len(values) < 2:
            return _join(values, line)
        a, b = values[0], values[1]
        lines = a.lines | b.lines | {line}
        if op == "Mult":
            for zero, other in ((a, b), (b, a)):
                if zero.kind == CONST and zero.num == 0.0:  # the blend's mask switched this operand off
                    via = zero.via
                    if via is None and other.kind == DATA and zero.cmps:
                        via = line
                    if via == line:
                        self.kept[line] = other.lines
                    return zero.but(lines=lines, via=via, cmps=a.cmps | b.cmps, probes=a.probes | b.probes)
            for one, other in ((a, b), (b, a)):
                if one.kind == CONST and one.num == 1.0 and one.cmps:
                    return other.but(lines=lines | other.lines, cmps=other.cmps | one.cmps,
                                     alias=other.alias or other, decided=other.decided or one.decided)
        if op == "Sub" and a.kind == DATA and b.alias is not None and b.alias is (a.alias or a):
            self.kept[line] = a.lines  # `x - x * t`: the data the trigger switches off
            return _V(CONST, 0.0, lines=lines, probes=a.probes | b.probes, cmps=a.cmps | b.cmps, via=line,
                      decided=a.decided or b.decided)
        if op in ("Add", "Sub"):  # `x + 0`: the blend's switched-off half adds nothing
            for zero, other in ((b, a), (a, b)) if op == "Add" else ((b, a),):
                if zero.kind == CONST and zero.num == 0.0:
                    via = (other.via if other.via is not None else zero.via) if other.kind != DATA else None
                    return other.but(lines=lines, cmps=a.cmps | b.cmps, probes=a.probes | b.probes, via=via,
                                     decided=a.decided or b.decided)
        out = _join([a, b], line)
        if a.kind == b.kind == CONST and a.num is not None and b.num is not None:
            out.num = {"Mult": a.num * b.num, "Add": a.num + b.num, "Sub": a.num - b.num}.get(op)
        return out


def find_triggers(fn: ast.FunctionDef, tick: Callable[[], None]) -> list[Found]:
    base_run = _Interpreter(fn, tick)
    base = base_run.run()
    comparisons = base_run.comparisons
    if base is None or base.kind != DATA or not comparisons:
        return []
    keys = list(comparisons)
    hypotheses: list[tuple[str, dict[int, bool]]] = [("all hold", dict.fromkeys(keys, True)),
                                                      ("none holds", dict.fromkeys(keys, False))]
    if len(keys) > 1:
        for k in keys[:MAX_COMPARISONS]:
            where = f"the comparison on line {comparisons[k].line}"
            hypotheses.append((f"only {where} holds", {**dict.fromkeys(keys, False), k: True}))
            hypotheses.append((f"only {where} fails", {**dict.fromkeys(keys, True), k: False}))
    for label, assumed in hypotheses:
        run = _Interpreter(fn, tick)
        run.comparisons = dict(comparisons)
        run.assumed = assumed
        out = run.run()
        if out is None or out.kind == DATA or out.via is None:
            continue
        used = sorted((comparisons[k] for k in out.cmps if k in comparisons), key=lambda c: c.line)
        if not used:
            continue
        kept = run.kept.get(out.via, frozenset())
        if not out.decided and (any(c.subject & kept for c in used) or not any(c.point for c in used)):
            # Elementwise, not one decision: a choice on the very data it keeps (a ReLU), or a mask
            # over a range of the input (padding, ignored labels) rather than a token or a pixel.
            continue
        probes = sorted(set().union(*(c.probes for c in used)))
        return [Found(out.via, used, probes, sorted(out.lines), label)]
    return []
