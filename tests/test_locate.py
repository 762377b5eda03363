"""Mapping offsets inside container members to the file on disk (airlock.core.locate)."""

import numpy as np
import torch
from fixtures.gguf_files import system_pickle

from airlock.core.locate import finding_location, node_location, resolve
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.tree import TENSOR, Node


def test_a_pickle_inside_a_torch_zip_maps_to_its_bytes_in_the_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.ones(3)}, path)
    result = scan_file(path)
    try:
        pickle_node = next(n for n in result.root.walk() if n.kind == "pickle")
        loc = node_location(pickle_node)
        assert loc.offset is not None and "in member" in loc.note
        assert result.source.read(loc.offset, 2) == b"\x80\x02"  # PROTO 2
        assert loc.length == pickle_node.length
    finally:
        result.close()


def test_npz_members_stored_map_and_compressed_ones_say_why(tmp_path):
    a = np.arange(6, dtype="<i4")
    np.savez(tmp_path / "s.npz", a=a)
    np.savez_compressed(tmp_path / "c.npz", a=a)
    for name, mapped in (("s.npz", True), ("c.npz", False)):
        result = scan_file(tmp_path / name)
        try:
            array = next(n for n in result.root.walk() if n.kind == TENSOR)
            loc = node_location(array)
            if mapped:
                assert result.source.read(loc.offset, a.nbytes) == a.tobytes()
            else:
                assert loc.offset is None and "compressed (deflated)" in loc.note
        finally:
            result.close()


def test_a_findings_offset_maps_through_its_member(tmp_path):
    import zipfile

    path = tmp_path / "ckpt.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", system_pickle())
        z.writestr("archive/version", "3\n")
    result = scan_file(path)
    try:
        finding = max(result.findings, key=lambda f: f.severity)
        assert finding.member and finding.member.endswith("data.pkl")
        loc = finding_location(finding, finding.node)
        assert loc.offset is not None and result.source.read(loc.offset, 1) in (b"c", b"R")
        unanchored = finding_location(finding, None)
        assert unanchored.offset is None and "relative to member" in unanchored.note
    finally:
        result.close()


def test_top_level_offsets_are_file_offsets():
    result = scan_bytes(system_pickle(), "p.pkl")
    try:
        node = result.root
        assert resolve(node, 5, from_member=None).offset == 5
        assert "no byte offset" in resolve(node, None, from_member=None).note
        orphan = Node(TENSOR, "t", offset=3, member="m.npy")
        assert orphan.parent is None and resolve(orphan, 3, from_member="m.npy").offset is None
    finally:
        result.close()
