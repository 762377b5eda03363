"""One wording and colour per verdict state in the window (core's airlock.core.verdict, painted as is): a
clean torch checkpoint reads like a clean SafeTensors file, a 0-byte file is never green, a file that
cannot be read says COULD NOT OPEN instead of HIGH RISK."""

import torch
from safetensors.torch import save_file

from airlock.core import verdict
from airlock.core.findings import Severity


def test_each_state_has_one_wording_and_colour(qtbot, window, tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "model.pt")  # the real writers
    save_file({"w": torch.ones(3)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "loop_a.bin").symlink_to(tmp_path / "loop_b.bin")
    (tmp_path / "loop_b.bin").symlink_to(tmp_path / "loop_a.bin")  # opening it fails (ELOOP), even as root
    names = ["model.pt", "model.safetensors", "empty.safetensors", "loop_a.bin"]
    with qtbot.waitSignal(window.all_scans_finished, timeout=120_000):
        views = window.open_paths([str(tmp_path / n) for n in names])
    shown = {name: view.banner.verdict for name, view in zip(names, views, strict=True)}
    tabs = {name: window.tabs.tabText(window.tabs.indexOf(view)) for name, view in zip(names, views, strict=True)}

    clean_pt, clean_st = shown["model.pt"], shown["model.safetensors"]
    assert (clean_pt.word, clean_pt.severity, clean_pt.colour) == (clean_st.word, clean_st.severity, clean_st.colour)
    assert clean_pt.word == "NO RISK FOUND" and tabs["model.pt"].endswith("— NO RISK FOUND")
    assert views[0].banner.severity == views[1].banner.severity == Severity.NONE  # the same green banner

    empty = shown["empty.safetensors"]
    assert empty.severity != Severity.NONE and views[2].banner.severity != Severity.NONE
    assert "NO RISK FOUND" not in tabs["empty.safetensors"]

    failed = shown["loop_a.bin"]
    assert failed.state == verdict.FAILED and tabs["loop_a.bin"].endswith("— COULD NOT OPEN")
    assert views[3].banner.label.text().startswith("COULD NOT OPEN") and "HIGH RISK" not in tabs["loop_a.bin"]
