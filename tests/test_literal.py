"""core/literal.py reads what ast.literal_eval reads for the .npy header subset, without compile()."""

import ast
import builtins

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.core.errors import FormatError
from airlock.core.literal import MAX_DEPTH, LiteralError, read_literal

SAME_AS_LITERAL_EVAL = [
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }          \n",
    "{'descr': [('a', '<i4'), ('b', '<f8', (2,))], 'fortran_order': True, 'shape': (), }",
    "()", "(1,)", "(1)", "((1,),)", "[1, [2, (3,)]]", "[]", "{}",
    "'a' \"b\"", "u'x'", "b'\\x00\\n'", "rb'\\d'", "r'\\n'", "'''x\ny'''", "'\\u00e9\\101\\x41'",
    "0", "-5", "+7", "0x1F", "0o17", "0b101", "1_000", "0x_f", "- 3",
    "True", "False", "None", "{'a': 1, 'a': 2}", "{1: 'x', True: 'y'}", "{(1, 2): [3]}",
    "\n{\n1:\n2}\n", "(\"a\"\n \"b\")", "{'a': 1} # comment", "[1, # c\n 2]", "'line \\\ncont'",
]


@pytest.mark.parametrize("text", SAME_AS_LITERAL_EVAL)
def test_matches_literal_eval(text):
    ours = read_literal(text)
    theirs = ast.literal_eval(text)
    assert ours == theirs
    assert type(ours) is type(theirs)


REJECTED = [
    "__import__('os').system('x')", "foo", "len('x')", "1.5", "1e5", "1j", "{[1]: 2}", "012", "3L",
    "(1, 2", "{1: 2", "set()", "{1, 2}", "1 2", "'a'\n'b'", "- - 3", "-'a'", "0x", "1__0", "'\\x4'",
    "'unterminated", "'new\nline'", "'a' b'b'", "b'é'", "", "   ", "{'a' 1}", "[1 2]", "'\\N{DASH}'",
]


@pytest.mark.parametrize("text", REJECTED)
def test_rejects_non_literals_with_a_position(text):
    with pytest.raises(LiteralError) as info:
        read_literal(text)
    assert isinstance(info.value, FormatError)
    assert info.value.offset is not None and 0 <= info.value.offset <= len(text)


@pytest.mark.parametrize("text", ["'a'\n'b'", "len('x')", "(1, 2", "{[1]: 2}", "012"])
def test_rejected_texts_are_rejected_by_python_too(text):
    with pytest.raises((SyntaxError, ValueError, TypeError)):
        ast.literal_eval(text)


def test_unknown_escape_keeps_its_backslash_as_python_does():
    assert read_literal("'\\q'") == "\\q"


def test_python2_long_suffix_only_when_asked():
    assert read_literal("{'shape': (3L, 4l)}", allow_long_suffix=True) == {"shape": (3, 4)}
    with pytest.raises(LiteralError):
        read_literal("{'shape': (3L,)}")


def test_deep_nesting_is_a_finding_not_a_recursion_error():
    text = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    with pytest.raises(LiteralError, match="nested deeper"):
        read_literal(text)
    assert read_literal("[" * 10 + "]" * 10) == [[[[[[[[[[]]]]]]]]]]


def test_huge_integer_is_refused():
    with pytest.raises(LiteralError):
        read_literal("1" * 5000)


def test_never_compiles(monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("compile() was called")

    monkeypatch.setattr(builtins, "compile", no_compile)
    assert read_literal("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }")["descr"] == "|O"


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.binary(max_size=20))
_hashable = st.recursive(_scalars, lambda inner: st.tuples(inner, inner) | st.tuples(inner), max_leaves=6)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(_hashable, inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_values)
def test_round_trips_python_reprs(value):
    assert read_literal(repr(value)) == value
