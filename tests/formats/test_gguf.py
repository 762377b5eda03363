"""GGUF: every THREATS class flagged, GGUFWriter output clean and read exactly as GGUFReader reads it."""

import json
import os
import subprocess
import sys
import time

import pytest
from fixtures import gguf_files as GF
from fixtures.gguf_files import G, hostile_files, small, system_pickle, vocabulary, writer_files
from helpers import assert_flagged, rules
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.core.findings import Severity
from airlock.core.formats import gguf as gguf_format
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.text import safe_text
from airlock.core.tree import ARRAY, TEMPLATE, TENSOR

HOSTILE = hostile_files()
WRITTEN = writer_files()
NESTED = writer_files(nested=True)
N_TOKENS = 151_936


def scan(data, name="model.gguf"):
    return scan_bytes(data, name)  # left open: tests expand lazy nodes afterwards


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_flagged_by_its_rule(name):
    data, rule, severity = HOSTILE[name]
    assert_flagged(scan(data), rule, severity)


@pytest.mark.parametrize("name", [*sorted(WRITTEN), "handmade", "v1", "v2_big_endian"])
def test_benign_files_are_clean(name):
    data = {"handmade": small(), "v1": small(G(version=1)), "v2_big_endian": small(G(version=2, endian=">"))}.get(
        name) or WRITTEN[name]
    result = scan(data)
    assert result.format == "gguf"
    assert result.findings == [], [f.message for f in result.findings]


def _by_kind(root, kind, expand=False):
    return [n for n in root.walk(expand_lazy=expand) if n.kind == kind]


@pytest.mark.parametrize("name", sorted(WRITTEN) + sorted(NESTED))
def test_tree_agrees_with_gguf_reader(tmp_path, name):
    import gguf

    path = tmp_path / name
    path.write_bytes({**WRITTEN, **NESTED}[name])
    reader = gguf.GGUFReader(str(path))
    result = scan_file(path)
    metadata = next(c for c in result.root if c.label.startswith("metadata"))
    ours = {n.attrs["key"]: n for n in metadata}
    theirs = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(ours) == list(theirs)
    for key, field in theirs.items():
        node = ours[key]
        assert node.offset == field.offset
        assert node.attrs["type"] == field.types[0].name.lower()
        if node.kind == ARRAY:
            values = [safe_text(v) if isinstance(v, str) else v for v in field.contents()]
            got = []  # gguf-py flattens arrays of arrays; so does this comparison
            for c in node:
                got += [g.attrs["value"] for g in c] if c.kind == ARRAY else [c.attrs["value"]]
            assert got == (pytest.approx(values) if isinstance(values[0], float) else values)
        elif node.kind == TEMPLATE:
            assert node.attrs["text"] == field.contents()
        else:
            assert node.attrs["value"] == pytest.approx(field.contents())
    tensors = {n.attrs["name"]: n for n in _by_kind(result.root, TENSOR)}
    assert list(tensors) == [t.name for t in reader.tensors] or set(tensors) == {t.name for t in reader.tensors}
    for t in reader.tensors:
        node = tensors[t.name]
        assert node.attrs["dtype"] == t.tensor_type.name
        assert node.attrs["shape"] == tuple(int(d) for d in t.shape)
        assert node.attrs["size"] == t.n_bytes
        assert node.offset == node.attrs["data_offset"] == t.data_offset
        assert node.attrs["info_offset"] == t.field.offset
    result.close()


def test_tensors_are_grouped_and_templates_are_template_nodes():
    result = scan(WRITTEN["tiny.gguf"])
    q = next(n for n in _by_kind(result.root, TENSOR) if n.attrs["name"] == "blk.0.attn_q.weight")
    assert q.path().split(" / ")[-3:] == ["blk", "0", "attn_q", "weight"][-3:]
    templates = _by_kind(result.root, TEMPLATE)
    assert [t.attrs["key"] for t in templates] == ["tokenizer.chat_template", "tokenizer.chat_template.rag"]
    assert all("text" in t.attrs for t in templates)


def test_escaping_template_names_its_line():
    result = scan(HOSTILE["chat_template_escape"][0])
    (finding,) = [f for f in result.findings if f.rule == "TPL001"]
    assert finding.severity == Severity.CRITICAL
    assert "line 1" in finding.message and "cycler.__init__.__globals__" in finding.message
    assert finding.node.kind == TEMPLATE and finding.node.attrs["findings_lines"] == [1]


def test_trailing_pickle_is_sniffed_and_named():
    data = HOSTILE["trailing_pickle"][0]
    result = scan(data)
    trailing = next(f for f in result.findings if f.rule == "AIR008")
    assert "pickle" in trailing.message and "system" in trailing.message
    assert trailing.offset == len(data) - len(system_pickle())
    assert any(f.severity == Severity.CRITICAL for f in result.findings)


def test_every_cut_of_a_real_file_is_one_truncated_finding():
    data = WRITTEN["tiny.gguf"]
    full = scan(data)
    n_tensors = len(_by_kind(full.root, TENSOR))
    data_start = full.root.attrs["data_offset"]
    last_end = max(n.offset + n.length for n in _by_kind(full.root, TENSOR))
    for cut in range(8, last_end, 3):
        result = scan(data[:cut])
        high = [f for f in result.findings if f.severity >= Severity.HIGH]
        assert len(high) == 1, (cut, [f.message for f in result.findings])
        assert "truncated" in high[0].message
        assert "AIR001" not in rules(result)
        if cut >= data_start:  # the whole header is there: so is every tensor info
            assert len(_by_kind(result.root, TENSOR)) == n_tensors
            assert "missing or cut" in high[0].message


def test_truncated_download_names_what_is_missing():
    data = vocabulary(5000)
    result = scan(data[: len(data) // 2])
    (finding,) = [f for f in result.findings if f.severity >= Severity.HIGH]
    assert finding.rule == "GG001"
    assert finding.message.startswith("truncated: KV #4 'tokenizer.ggml.token_type'")
    assert "missing: KV pairs 4 to 5 of 5, the 1 tensor info(s) and the tensor data" in finding.message
    assert any(n.attrs.get("key") == "tokenizer.ggml.tokens" for n in result.root.walk())


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    from test_templates import QWEN_TOOLS

    path = tmp_path_factory.mktemp("gguf") / "qwen-vocab.gguf"
    path.write_bytes(vocabulary(N_TOKENS, QWEN_TOOLS))
    return path


def test_large_vocabulary_opens_lazily(vocab_file):
    # Lazily: the tree holds a few hundred nodes, not one per token (the speed of a 150k-token scan
    # is the "gguf" row of benchmarks/run.py, beside gguf-py's GGUFReader).
    result = scan_file(vocab_file)
    assert [(f.rule, f.severity) for f in result.findings] == [("TPL010", Severity.INFO)]  # drift, no more
    assert sum(1 for _ in result.root.walk()) < 1000
    tokens = next(n for n in result.root.walk() if n.attrs.get("key") == "tokenizer.ggml.tokens")
    assert tokens.is_lazy and tokens.child_count == N_TOKENS
    assert tokens.child_at(N_TOKENS - 1).attrs["value"] == f"Ġtok{N_TOKENS - 1}"
    assert tokens.child_at(70_000).label == "[70,000] Ġtok70000"
    types = next(n for n in result.root.walk() if n.attrs.get("key") == "tokenizer.ggml.token_type")
    assert [c.attrs["value"] for c in types.children(0, 3)] == [1, 1, 1]
    result.close()


def test_whole_process_scan_of_a_large_vocabulary(vocab_file):
    code = ("import sys; from airlock.core.cli import main; "
            "rc = main(['scan', '--format', 'json', sys.argv[1]]); "
            "print('numpy' in sys.modules, 'gguf' in sys.modules, file=sys.stderr); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(vocab_file)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["files"][0]["format"] == "gguf" and [f["rule"] for f in report["files"][0]["findings"]] == ["TPL010"]
    numpy_loaded, gguf_loaded = proc.stderr.split()
    # Only gguf's constants module is needed, not the package (which pulls numpy, ~0.3 s).
    assert (numpy_loaded, gguf_loaded) == ("False", "False")


def test_gguf_and_jinja2_are_not_imported_for_other_formats():
    code = ("import sys; from airlock.core.scan import scan_bytes; import pickle; "
            "scan_bytes(pickle.dumps([1, 2]), 'x.pkl'); "
            "print([m for m in ('gguf', 'jinja2', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nested_arrays_are_lazy_too():
    result = scan(NESTED["tiny_nested.gguf"])
    nested = next(n for n in result.root.walk() if n.attrs.get("key") == "llama.nested")
    assert nested.child_count == 2
    assert [[g.attrs["value"] for g in c] for c in nested] == [[1, 2], [3]]


def test_big_endian_is_read_as_big_endian():
    result = scan(WRITTEN["big_endian.gguf"])
    assert result.root.attrs["byte_order"] == "big-endian"
    ctx_len = next(n for n in result.root.walk() if n.attrs.get("key") == "llama.context_length")
    assert ctx_len.attrs["value"] == 4096


def test_lazy_pages_read_after_the_time_budget(vocab_file):
    from airlock.core.limits import Limits

    result = scan_file(vocab_file, limits=Limits(time_budget_s=5))
    nested_ok = next(n for n in result.root.walk() if n.attrs.get("key") == "tokenizer.ggml.merges")
    time.sleep(0)  # expansion later must not consult the scan's clock
    assert nested_ok.child_at(1000).attrs["value"] == "Ġ t1000"
    result.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_files_never_crash_the_parser(data):
    seed = WRITTEN["tiny.gguf"]
    blob = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(4, len(blob) - 1))
        blob[i] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, data.draw(st.integers(0, 255))]))
    result = scan(bytes(blob))
    assert "AIR001" not in rules(result), [f.message for f in result.findings]
    for node in result.root.walk():
        if node.is_lazy:
            node.children(0, 3)  # pages of a mutated file build too


def test_sniff():
    assert gguf_format.sniff(WRITTEN["tiny.gguf"][:64], 64) == 100
    assert gguf_format.sniff(b"GGUF\x07\x00\x00\x00", 8) == 80
    assert gguf_format.sniff(b"GGML" + bytes(8), 12) == 0
    assert os.path.splitext("x.gguf")[1] in gguf_format.EXTENSIONS


def test_hundreds_of_keys_are_lazy_and_still_checked():
    g = G()
    kvs = [g.kv_u32(f"key.{i}", i) for i in range(300)]
    kvs += [g.kv_u32("key.7", 7), g.kv_str("tokenizer.chat_template", "{{ joiner.__init__.__globals__ }}")]
    result = scan(g.file(kvs, []))
    metadata = next(c for c in result.root if c.label.startswith("metadata"))
    assert metadata.is_lazy and metadata.child_count == 302
    assert sum(1 for _ in result.root.walk()) < 20
    assert metadata.child_at(299).attrs["value"] == 299
    found = {f.rule: f for f in result.findings}
    assert set(found) == {"GG003", "TPL001"}
    assert found["GG003"].node is metadata and found["GG003"].offset > 0
    assert found["TPL001"].node.kind == TEMPLATE


def test_counts_over_the_limit_stop_reading(monkeypatch):
    monkeypatch.setattr(gguf_format, "MAX_KV_PAIRS", 10)
    g = G()
    result = scan(g.file([g.kv_u32(f"k{i}", i) for i in range(20)], []))
    assert [f.rule for f in result.findings] == ["AIR003"]
    assert "20 KV pairs" in result.findings[0].message


def test_empty_string_array_regression():
    """Found by hypothesis: a byte flip that made an array of strings empty crashed its preview."""
    blob = bytearray(WRITTEN["tiny.gguf"])
    blob[527] = 0
    result = scan(bytes(blob))
    assert "AIR001" not in rules(result), [f.message for f in result.findings]


# The key/value grammar, checked against the spec (ggml's docs/gguf.md) and against what llama.cpp's
# gguf_init_from_reader refuses; gguf-py's GGUFReader is run on the same bytes to show where it differs.

def _gguf_py_reads(tmp_path, data):
    import gguf

    path = tmp_path / "x.gguf"
    path.write_bytes(data)
    return gguf.GGUFReader(str(path))


def _findings(result, rule):
    return [f for f in result.findings if f.rule == rule]


@pytest.mark.parametrize("name", sorted(NESTED))
def test_array_of_arrays_from_gguf_writer_is_malformed_as_llama_cpp_refuses_it(tmp_path, name):
    data = NESTED[name]
    assert _gguf_py_reads(tmp_path, data).fields["llama.nested"]  # gguf-py reads it...
    result = scan(data)
    (finding,) = [f for f in result.findings if f.severity >= Severity.HIGH]  # ...llama.cpp does not
    assert finding.rule == "GG002" and "array of arrays" in finding.message and "llama.cpp refuses" in finding.message
    assert finding.node.attrs["key"] == "llama.nested"
    # The header was read to its end the way gguf-py reads it: every tensor is there.
    assert len(_by_kind(result.root, TENSOR)) == 4


def test_nesting_inside_nesting_is_one_finding_per_key():
    g = G()
    inner = g.u32(GF.ARRAY) + g.n(1) + g.u32(GF.U8) + g.n(2) + b"\x01\x02"  # [[1, 2]]
    data = small(g, extra_kvs=[g.kv("deep", GF.ARRAY, g.u32(GF.ARRAY) + g.n(2) + inner + inner)])
    result = scan(data)
    assert [f.rule for f in result.findings] == ["GG002"]


def test_empty_key_is_refused():
    g = G()
    result = scan(small(g, extra_kvs=[g.kv_u32("", 1)]))
    (finding,) = result.findings
    assert finding.rule == "GG002" and "empty key" in finding.message and finding.severity == Severity.HIGH


@pytest.mark.parametrize("key", ["General.Name", "tokenizer..tokens", "llama.context length", "ключ.x",
                                 "a.b.", "x" * 65536])
def test_keys_that_break_the_naming_rules_are_low(tmp_path, key):
    g = G()
    data = small(g, extra_kvs=[g.kv_u32(key, 1)])
    assert key in _gguf_py_reads(tmp_path, data).fields  # readers take it
    result = scan(data)
    (finding,) = result.findings
    assert finding.rule == "GG008" and finding.severity == Severity.LOW
    assert ("65,536 bytes long" if len(key) > 65535 else "lower_snake_case") in finding.message


@pytest.mark.parametrize("key", ["general.base_model.0.repo_url", "tokenizer.ggml.add_bos_token",
                                 "llama.rope.scaling.original_context_length", "a"])
def test_real_key_shapes_are_clean(key):
    g = G()
    assert scan(small(g, extra_kvs=[g.kv_u32(key, 1)])).findings == []


def test_boolean_bytes_other_than_0_and_1_are_low(tmp_path):
    g = G()
    data = small(g, extra_kvs=[g.kv("tokenizer.ggml.add_bos_token", GF.BOOL, b"\x02"),
                               g.kv("flags", GF.ARRAY, g.u32(GF.BOOL) + g.n(4) + b"\x00\x01\x07\xff")])
    reader = _gguf_py_reads(tmp_path, data)
    assert bool(reader.fields["tokenizer.ggml.add_bos_token"].contents()) is True  # read as true
    result = scan(data)
    assert [f.rule for f in result.findings] == ["GG008", "GG008"]
    assert "boolean byte 2" in result.findings[0].message
    assert "2 boolean element(s)" in result.findings[1].message
    assert scan(small(g, extra_kvs=[g.kv("b", GF.BOOL, b"\x01")])).findings == []


def test_string_that_is_not_utf8_is_low():
    g = G()
    result = scan(small(g, extra_kvs=[g.kv("general.name", GF.STRING, g.s(b"caf\xe9"))]))
    (finding,) = result.findings
    assert finding.rule == "GG008" and "not UTF-8 at byte 3" in finding.message


def test_spec_findings_are_capped_and_counted():
    g = G()
    result = scan(small(g, extra_kvs=[g.kv_u32(f"Key{i}", i) for i in range(30)]))
    found = _findings(result, "GG008")
    assert len(found) == gguf_format.MAX_SPEC_FINDINGS + 1
    assert found[-1].message.startswith("10 more values")


def test_llama_cpp_limits_on_strings_and_arrays(monkeypatch):
    # 1 GiB strings and 2^30-element arrays cannot be test inputs: the limits are scaled down.
    from airlock.core.formats import gguf_values

    monkeypatch.setattr(gguf_values, "MAX_STRING_LENGTH", 16)
    monkeypatch.setattr(gguf_values, "MAX_ARRAY_ELEMENTS", 3)
    g = G()
    data = small(g, extra_kvs=[g.kv_str("general.description", "x" * 17),
                               g.kv_numbers("counts", GF.U8, "B", [1, 2, 3, 4]),
                               g.kv_strings("words", ["short", "y" * 40])])
    result = scan(data)
    messages = sorted(f.message.split(": ", 1)[1] for f in result.findings)
    assert {f.rule for f in result.findings} == {"GG002"}
    assert messages == [
        "KV #3 'tokenizer.ggml.tokens': 4 elements (llama.cpp refuses arrays of more than 3; gguf-py reads them)",
        "KV #4 'general.description': a string of 17 bytes (llama.cpp refuses strings over 16 bytes; gguf-py "
        "reads it)",
        "KV #5 'counts': 4 elements (llama.cpp refuses arrays of more than 3; gguf-py reads them)",
        "KV #6 'words'[1]: a string of 40 bytes (llama.cpp refuses strings over 16 bytes; gguf-py reads it)",
    ]


def test_chat_template_split_across_an_array_is_rendered_as_llama_cpp_joins_it():
    g = G()
    parts = ["{{ cycler.__init__.__globals__.os.popen('id').read() ~ ", " ~ '' }}"]
    result = scan(small(g, extra_kvs=[g.kv_strings("tokenizer.chat_template", parts)]))
    rules_found = {f.rule: f for f in result.findings}
    assert set(rules_found) == {"GG002", "TPL001"}
    assert "array of string" in rules_found["GG002"].message
    assert rules_found["TPL001"].severity == Severity.CRITICAL
    assert "cycler.__init__.__globals__" in rules_found["TPL001"].message


def test_chat_template_of_the_wrong_type_is_malformed_but_not_an_escape():
    g = G()
    plain = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    result = scan(small(g, extra_kvs=[g.kv_strings("tokenizer.chat_template", [plain]),
                                      g.kv_u32("tokenizer.chat_template.rag", 7)]))
    assert [f.rule for f in result.findings] == ["GG002", "GG002"]
    assert result.severity == Severity.HIGH
    assert "is a uint32" in result.findings[1].message
