"""Search over the core tree (airlock.core.search): lazy lists included, nothing kept, cancellable."""


import pytest
from fixtures.gguf_files import F32, G, vocabulary

from airlock.core.errors import Cancelled
from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes
from airlock.core.search import Search, matches, normalise
from airlock.core.tree import FILE, GROUP, PAGE_SIZE, TEXT, Node

VOCAB = 20_000


def lazy_tree(count: int):
    built = []

    def page(start, stop):
        built.append((start, stop))
        return [Node(TEXT, f"token {i}", attrs={"id": i}) for i in range(start, stop)]

    root = Node(FILE, "vocab")
    root.child(GROUP, "header").child(TEXT, "name = demo")
    group = root.child(GROUP, f"tokens ({count:,})")
    group.set_lazy_children(count, page)
    return root, group, built


def naive(root: Node, text: str) -> list[tuple[int, ...]]:
    """Build every node and test it. A list element is matched on its kind and value, not its position."""
    needle = normalise(text)
    out = []
    for n in root.walk(expand_lazy=True):
        if n.kind == "element":
            hit = needle in f"{n.kind}\n{n.attrs['value']}".casefold()
        else:
            hit = matches(n, needle)
        if hit:
            out.append(tuple(n.index_path()))
    return out


def test_matches_names_kinds_and_values_in_tree_order():
    root, _group, _ = lazy_tree(3_000)
    search = Search(root, "TOKEN 12")
    found = list(search.run())
    assert found[0] == (1, 12) and (1, 1200) in found and (1, 2999) not in found
    assert found == sorted(found)
    assert search.complete and search.found == len(found) == 1 + 10 + 100  # 12, 120-129, 1200-1299
    assert search.visited == 1 + 2 + 1 + 3_000  # every node, the lazy ones included
    assert list(Search(root, "name = demo").run()) == [(0, 0)]
    assert list(Search(root, "group").run()) == [(0,), (1,)]  # the kind column


def test_lazy_pages_are_walked_but_not_kept():
    root, group, built = lazy_tree(10_000)
    list(Search(root, "token 9999").run())
    assert len(built) == -(-10_000 // PAGE_SIZE)  # every page built once...
    assert group._cache == {}  # ...and none kept: searching a million opcodes leaves nothing behind
    node = group.child_at(5)  # a page the view built is used as it is
    assert Search(root, "token 5").run().__next__() == (1, 5)
    assert group.child_at(5) is node


def test_cancel_stops_a_search_quickly():
    root, _, built = lazy_tree(100_000)
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    search = Search(root, "no such text", cancelled=cancelled)
    with pytest.raises(Cancelled):
        list(search.run())
    assert search.visited < 2_000 and len(built) < 10
    assert not search.complete


def test_keep_bounds_the_paths_but_the_count_goes_on():
    root, _, _ = lazy_tree(5_000)
    search = Search(root, "token", keep=100)
    assert len(list(search.run())) == 100
    assert search.found == 5_001  # the group "tokens (5,000)" and its 5,000 tokens


def test_risky_only_keeps_risky_nodes_and_skips_clean_branches():
    result = scan_bytes(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.", "evil.pkl")
    search = Search(result.root, "", risky_only=True)
    paths = list(search.run())
    for path in paths:
        node = result.root
        for i in path:
            node = node.child_at(i)
        assert node.severity >= Severity.LOW
    labels = []
    for path in paths:
        node = result.root
        for i in path:
            node = node.child_at(i)
        labels.append(node.label)
    assert any("os.system" in label for label in labels)
    assert not any(label.startswith("opcodes") for label in labels)  # clean lists are never entered
    with_text = list(Search(result.root, "system", risky_only=True).run())
    assert with_text and set(with_text) < set(paths)


def test_a_vocabulary_is_searched_in_its_bytes_without_building_nodes():
    tokens = [f"tok{i}" for i in range(VOCAB)] + ["<|im_start|>"]
    g = G()
    data = g.file([g.kv_str("general.architecture", "qwen2"), g.kv_strings("tokenizer.ggml.tokens", tokens),
                   g.kv_numbers("tokenizer.ggml.scores", F32, "f", [0.5] * len(tokens))], [])
    result = scan_bytes(data, "vocab.gguf")
    arrays = [n for n in result.root.walk() if n.is_lazy and n.child_count == len(tokens)]
    tokens_node = next(n for n in arrays if "tokens" in n.label)
    assert tokens_node.can_find_children
    search = Search(result.root, "<|IM_START|>")
    (path,) = list(search.run())
    assert search.visited >= 2 * len(tokens)
    assert all(not n._cache for n in arrays)  # no element node was built, let alone kept
    node = result.root
    for i in path:
        node = node.child_at(i)
    assert node.label == f"[{VOCAB:,}] <|im_start|>"
    # The same matches as building every node and testing its value (its position is not searched).
    for needle in ("tok1999", "TOK19", "0.5", "im_", "k1"):
        assert list(Search(result.root, needle).run()) == naive(result.root, needle), needle


def test_vocabulary_search_agrees_with_casefolding_the_strings():
    # Strings where lowercasing bytes is not casefolding: non-ASCII needles, ß (→ ss), the Kelvin sign,
    # invalid UTF-8 shown as \xNN, needles that would straddle a length field or two strings.
    tokens = ["Straße", "STRASSE", "ÉCOLE", "école", "\u212aelvin", "kelvin", "plain", "AB", "CD", "A", "x" * 65]
    raw = [t.encode() for t in tokens] + [b"bad\xffbyte", b"ok"]
    g = G()
    body = b"".join(g.s(t) for t in raw)
    kv = g.kv("tokenizer.ggml.tokens", 9, g.u32(8) + g.n(len(raw)) + body)
    result = scan_bytes(g.file([kv], []), "v.gguf")
    for needle in ("ss", "SS", "straße", "école", "kelvin", "\u212a", "bcd", "abcd", "xff", "\\xff", "a", "xx", "A\x00"):
        assert list(Search(result.root, needle).run()) == naive(result.root, needle), needle


def test_gguf_finder_agrees_with_the_nodes_past_the_first_page():
    result = scan_bytes(vocabulary(1_000), "v.gguf")
    node = next(n for n in result.root.walk() if n.is_lazy and n.child_count == 1_000)
    assert list(node.find_children("tok30", 300, 310)) == [300, 301, 302, 303, 304, 305, 306, 307, 308, 309]
    assert list(node.find_children("tok3", 290, 310)) == list(range(300, 310))


def test_a_deep_tree_does_not_recurse():
    root = node = Node(FILE, "deep")
    for i in range(5_000):
        node = node.child(GROUP, f"level {i}")
    assert list(Search(root, "level 4999").run()) == [(0,) * 5_000]
