"""scripts/pose_study.py end to end on the tiny preset: training arms, the constant baseline, the probe."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import ENV, REPO, load_script, run_command

from ff3r_ns.data.readers import read_scene
from ff3r_ns.data.views import load_views

from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import save_ff3r_checkpoint

SMALL = ["--preset", "tiny", "--size", "56", "--rooms", "3", "--eval-rooms", "2", "--frames", "24", "--min-gap", "4",
         "--max-gap", "8", "--eval-samples", "3", "--batch", "2", "--threads", "1"]  # fmt: skip


@pytest.mark.slow
def test_pose_study_trains_arms_against_the_constant_and_probes_a_checkpoint(tmp_path):
    out = tmp_path / "study"
    run_command("scripts/pose_study.py", str(out), *SMALL, "--arms", "pose", "points", "--steps", "4",
                "--eval-every", "2")  # fmt: skip
    results = json.loads((out / "pose_study.json").read_text())
    assert set(results["arms"]) == {"pose", "points"}
    constant = results["constant"]
    assert constant["pose_loss"] > 0 and 0 < constant["rotation_deg"] < 180
    for history in results["arms"].values():
        assert [row["step"] for row in history] == [0, 2, 4]
        for row in history:
            assert math.isfinite(row["pose_loss"]) and 0 <= row["rotation_deg"] <= 180
            assert math.isfinite(row["cross_view_share"]) and row["cross_view_share"] >= 0
    # Same initialization and samples: the arms start equal and part once their losses differ.
    assert results["arms"]["pose"][0] == {**results["arms"]["points"][0], "seconds": results["arms"]["pose"][0]["seconds"]}
    assert results["arms"]["pose"][-1]["pose_loss"] != results["arms"]["points"][-1]["pose_loss"]
    assert (out / "pose_study.png").stat().st_size > 0

    torch.manual_seed(3)
    checkpoint = save_ff3r_checkpoint(FF3R.from_preset("tiny"), tmp_path / "tiny")
    output = run_command("scripts/pose_study.py", str(out), *SMALL, "--probe", str(checkpoint))
    probes = json.loads((out / "probe.json").read_text())["probes"]
    assert set(probes) == {str(checkpoint), f"{checkpoint} (random init)"}
    assert all(math.isfinite(row["cross_view_share"]) and row["cross_view_share"] > 0 for row in probes.values())
    assert "cross_view_share" in output


def test_pose_study_refuses_a_missing_checkpoint_before_rendering_rooms(tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "pose_study.py"), str(tmp_path / "out"), "--probe", str(tmp_path / "nope")]
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nope" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out" / "rooms").exists()


def test_room_views_give_what_load_views_gives(tmp_path):
    study = load_script("pose_study")
    (path,) = study.make_rooms(tmp_path, range(1), frames=12, size=64)
    scene = read_scene(path)
    frames = [7, 2, 9]
    direct = load_views(scene, frames, 56, depth=True)
    taken = study.RoomViews(scene, 56).take(frames)
    for name in ("images", "intrinsics", "camera_to_worlds", "depth"):
        assert torch.equal(taken[name], getattr(direct, name)), name


@pytest.mark.slow
def test_pose_study_continues_from_saved_weights_within_a_time_limit(tmp_path):
    rooms = tmp_path / "rooms"
    first = tmp_path / "first"
    run_command("scripts/pose_study.py", str(first), *SMALL, "--rooms-dir", str(rooms), "--workers", "2",
                "--render-only")  # fmt: skip
    assert len(list(rooms.glob("room_*/transforms.json"))) == 5  # 3 training and 2 held-out rooms
    run_command("scripts/pose_study.py", str(first), *SMALL, "--rooms-dir", str(rooms), "--arms", "pose+points",
                "--steps", "3", "--eval-every", "3", "--save")  # fmt: skip
    saved = first / "pose-points"
    # A continuation starts where the first run ended: its step-0 scores are the first run's last ones.
    second = tmp_path / "second"
    run_command("scripts/pose_study.py", str(second), *SMALL, "--rooms-dir", str(rooms), "--arms", "pose+points",
                "--steps", "1000", "--eval-every", "1000", "--init", str(saved), "--time-limit", "0.001")  # fmt: skip
    before = json.loads((first / "pose_study.json").read_text())["arms"]["pose+points"]
    after = json.loads((second / "pose_study.json").read_text())["arms"]["pose+points"]
    assert after[0]["pose_loss"] == pytest.approx(before[-1]["pose_loss"], rel=1e-5)
    assert after[-1]["step"] == 1 and "train_pose_loss" in after[-1]  # the time limit ended it after one step


def test_merge_draws_runs_of_one_study_and_refuses_others(tmp_path):
    def run(arm: str, weight: float, constant: float) -> Path:
        history = [{"step": s, "pose_loss": 0.1 / (s + 1), "rotation_deg": 10.0, "cross_view_share": 0.3,
                    **({"train_pose_loss": 0.05 / s} if s else {})} for s in (0, 10, 20)]  # fmt: skip
        args = {"preset": "tiny", "size": 56, "rooms": 3, "views": 3, "min_gap": 4, "max_gap": 8, "batch": 2,
                "points_weight": weight}  # fmt: skip
        path = tmp_path / f"{arm}-{weight}-{constant}.json"
        path.write_text(json.dumps({"args": args, "device": "cpu", "arms": {arm: history},
                                    "constant": {"pose_loss": constant, "rotation_deg": 8.0}}))  # fmt: skip
        return path

    out = tmp_path / "arms.png"
    run_command("scripts/pose_study.py", str(out), "--merge", str(run("pose", 1.0, 0.01)), str(run("pose+points", 10.0, 0.01)))
    assert out.stat().st_size > 0
    command = [sys.executable, str(REPO / "scripts" / "pose_study.py"), str(tmp_path / "no.png"), "--merge",
               str(run("pose", 1.0, 0.01)), str(run("pose", 1.0, 0.02))]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "different constants" in done.stderr and not (tmp_path / "no.png").exists()
