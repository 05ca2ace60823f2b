"""``scripts/evaluate.py`` (resume, per-scene JSONs, the paper's tables), ``scripts/evaluate_synthetic.py``'s
constant-pose baseline row, and the baseline itself against a hand computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.eval.baselines import constant_pose_errors, mean_relative_pose
from ff3r_ns.eval.paper_tables import TABLE_1, TABLE_2, TABLE_5
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import save_ff3r_checkpoint
from runs import load_script
from test_evaluate import known_gaussians, true_poses, write_known_scene


@pytest.fixture(scope="module")
def known_scenes(tmp_path_factory) -> Path:
    """Two 5-frame scenes rendered from known Gaussians (``test_evaluate``), in one folder."""
    root = tmp_path_factory.mktemp("known")
    for seed in (0, 1):
        write_known_scene(root / f"scene_{seed}", known_gaussians(seed=seed), true_poses())
    return root


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rooms")
    for seed in (0, 1):
        write_scene(root / f"room_{seed}", RoomConfig(seed=seed, num_views=6, image_size=32, shadows=False))
    return root


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_ff3r_checkpoint(FF3R.from_preset("tiny"), tmp_path_factory.mktemp("weights") / "tiny")


def test_runner_writes_one_json_per_scene_resumes_and_tables_the_papers_numbers(
    known_scenes, tiny_weights, tmp_path, capsys
):
    evaluate = load_script("evaluate")
    out = tmp_path / "eval"
    argv = [str(known_scenes), "--protocol", "sparse-2", "--protocol", "sparse-6", "--weights", str(tiny_weights),
            "--out", str(out), "--pose-steps", "2", "--text-encoder-weights", str(tmp_path / "no-clip")]  # fmt: skip
    assert evaluate.main(argv) == 0
    done = sorted(out.glob("*/*.json"))
    assert [p.relative_to(out).as_posix() for p in done] == [
        "sparse-2/scene_0.json", "sparse-2/scene_1.json", "sparse-6/scene_0.json", "sparse-6/scene_1.json",
    ]  # fmt: skip
    record = json.loads((out / "sparse-2" / "scene_0.json").read_text())
    results = record["results"]
    assert results["context_frames"] == [0, 4] and results["target_frames"] == [2]
    assert math.isfinite(results["psnr"]) and results["time_seconds"] > 0 and record["scene_seconds"] > 0
    assert "LSeg" in results["absent"]["miou_lseg_pseudo"]
    assert "at least 11 frames" in json.loads((out / "sparse-6" / "scene_0.json").read_text())["skipped"]

    # Resume: nothing is evaluated again; a deleted scene is.
    stamps = {p: p.stat().st_mtime_ns for p in done}
    (out / "sparse-2" / "scene_1.json").unlink()
    capsys.readouterr()
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("done before") == 3 and "sparse-2 scene_1: PSNR" in printed
    for path, stamp in stamps.items():
        if path.name != "scene_1.json" or path.parent.name != "sparse-2":
            assert path.stat().st_mtime_ns == stamp, path

    tables = (out / "tables.md").read_text()
    for cells in (TABLE_1["sparse-2"]["FF3R (paper)"], TABLE_1["dense-64"]["AnySplat"], TABLE_5["sparse-16"]["Uni3R"]):
        assert "| " + " | ".join("–" if c is None else c for c in cells) + " |" in tables
    assert " | ".join(TABLE_2["sparse-6"]["LSM"]) in tables
    psnr = np.mean([json.loads((out / "sparse-2" / f"scene_{i}.json").read_text())["results"]["psnr"] for i in (0, 1)])
    ours = [line for line in tables.splitlines() if line.startswith("| **ours (this run)**")]
    assert len(ours) == 4  # Table 1 sparse and dense, Table 2, Table 5
    assert ours[0].split(" | ")[1] == f"{psnr:.2f}" and "not run" in ours[1]
    assert "skipped: a sparse split with 6 context views" in tables


def test_constant_pose_baseline_by_hand():
    """Two 2-view scenes whose second camera turns 10 and 30 degrees about the vertical, 1 m to the right:
    the mean relative pose turns 20 degrees, so each scene's rotation error is 10 degrees; the centres fit."""

    def scene(degrees: float) -> np.ndarray:
        poses = np.tile(np.eye(4), (2, 1, 1))
        a = np.radians(degrees)
        poses[1, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        poses[1, :3, 3] = [1.0, 0.0, 0.0]
        return poses

    mean = mean_relative_pose([scene(10), scene(30)])
    np.testing.assert_allclose(mean[:3, :3], scene(20)[1, :3, :3], atol=1e-12)
    np.testing.assert_allclose(mean[:3, 3], [1.0, 0.0, 0.0], atol=1e-12)
    errors = constant_pose_errors([scene(10), scene(30)])
    for e in errors:
        assert e["rotation_deg_mean"] == pytest.approx(5.0, abs=1e-9)  # (0 + 10) / 2: the reference view is exact
        assert e["translation_mean"] == pytest.approx(0.0, abs=1e-9)


def test_evaluate_synthetic_prints_the_constant_pose_row_beside_every_model(rooms, tiny_weights, capsys):
    script = load_script("evaluate_synthetic")
    assert script.main([str(rooms), "--model", f"tiny={tiny_weights}", "--views", "2", "--gap", "2", "--pose-steps", "0"]) == 0
    printed = capsys.readouterr().out
    (row,) = [line for line in printed.splitlines() if line.startswith(f"| {script.BASELINE} |")]
    from ff3r_ns.data.readers import read_scenes

    scenes = read_scenes(rooms, verify=False)
    expected = np.mean([e["rotation_deg_mean"] for e in constant_pose_errors([s.camera_to_worlds[[0, 4]] for s in scenes])])
    cells = row.split(" | ")
    assert cells[7] == f"{expected:.1f}" and cells[3] == "–"  # rotation error; no novel PSNR for the baseline
    assert "2 rooms, 2 context views each (2 frames from view to target)" in printed
    assert any(line.startswith("| tiny |") for line in printed.splitlines())
