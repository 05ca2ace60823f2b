"""scripts/inference_table.py: rows from measure_inference.sh folders, never a ratio across two runs."""

from __future__ import annotations

import json

from runs import run_command


def write_run(folder, gpu: str, ff3r: dict[int, float], vggt: dict[int, float], precision: dict | None = None) -> None:
    folder.mkdir(parents=True)
    meta = {"device": gpu, "torch": "2.11"}
    for stem, times in (("large", ff3r), ("vggt1b-reference", vggt)):
        rows = [{"views": v, "seconds": t, "peak_gib": t * 10} for v, t in times.items()]
        (folder / f"h100-{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    if precision is not None:
        (folder / "precision-8.json").write_text(json.dumps(precision))


def path_scores(depth: float) -> dict:
    return {"depth_rel_err": {"median": depth}, "depth_spread_err": {"median": 10 * depth},
            "pose_enc_max_abs_err": depth, "means_voxel_err": {"median": depth}}  # fmt: skip


def test_rows_come_from_the_newest_run_that_measured_both_sides(tmp_path):
    precision = {"views": 8, "scene": "tum", "image_hw": [336, 448], "ff3r-mixed": path_scores(0.01),
                 "vggt-autocast": path_scores(0.02)}  # fmt: skip
    # The new run measured 64 views on both sides, 16 only for FF3R; the old one both at 16 and 64.
    write_run(tmp_path / "new", "H200", {16: 1.0, 64: 2.0}, {64: 4.0}, precision)
    write_run(tmp_path / "old", "H100", {16: 3.0, 64: 9.0}, {16: 6.0, 64: 9.0})
    out = tmp_path / "table.json"
    printed = run_command("scripts/inference_table.py", str(tmp_path / "new"), str(tmp_path / "old"), "--out", str(out))
    table = json.loads(out.read_text())
    rows = {r["views"]: r for r in table["rows"]}
    assert (rows[64]["seconds"], rows[64]["vggt_seconds"], rows[64]["ratio"], rows[64]["measured_in"]) == (2.0, 4.0, 0.5, "new")
    assert (rows[16]["seconds"], rows[16]["vggt_seconds"], rows[16]["ratio"], rows[16]["gpu"]) == (3.0, 6.0, 0.5, "H100")
    assert table["gpu"] == "H200"
    accuracy = table["accuracy"]
    assert accuracy["ff3r_depth_rel_err"] == {"median": 0.01} and accuracy["vggt_depth_spread_err"] == {"median": 0.2}
    assert "| 64 | 2.000 s | 4.000 s | 0.50 |" in printed


def test_a_run_without_its_precision_step_says_so(tmp_path):
    write_run(tmp_path / "run", "H100", {16: 1.0}, {16: 2.0})
    out = tmp_path / "table.json"
    run_command("scripts/inference_table.py", str(tmp_path / "run"), "--out", str(out))
    accuracy = json.loads(out.read_text())["accuracy"]
    assert accuracy["measured"] is False and "precision-8.json" in accuracy["why"]
