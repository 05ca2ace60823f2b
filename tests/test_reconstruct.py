"""Feed-forward reconstruction (``ns-train ff3r``) and its evaluation protocol.

Unit tests: view selection, the Sim(3) transform of Gaussians, target-pose refinement. Then the real
commands as subprocesses on a generated room with a tiny random network: ``ns-train ff3r``, ``ns-eval``,
``ns-export gaussian-splat`` and ``scripts/export_semantics.py``, and ``ns-train ff3r`` on a real image
folder (../shared/data/vggt_room, skipped where absent).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ff3r_ns.eval.alignment import apply_sim3, rotation_angle_deg
from ff3r_ns.eval.protocol import refine_pose, select_views, transform_gaussians, upright_sim3
from ff3r_ns.network.cameras import c2w_to_w2c, quat_to_matrix
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.render import render_gaussians
from ff3r_ns.network.weights import WeightsUnavailable
from runs import BIN, ENV, REPO, ROOM_VIEWS, run_command

SIZE, FOCAL = 32, 30.0


# --------------------------------------------------------------------------------------------------
# Protocol units
# --------------------------------------------------------------------------------------------------


def test_select_views_holds_out_targets_only_where_poses_place_them():
    centres = np.random.default_rng(0).normal(size=(20, 3))
    selection = select_views(20, "all", max_views=64, holdout_every=8, camera_centers=centres)
    assert selection.targets == [4, 12] and selection.context == [i for i in range(20) if i not in (4, 12)]
    thinned = select_views(20, "all", max_views=5, holdout_every=8, camera_centers=centres)
    assert len(thinned.context) == 5 and thinned.context[0] == 0 and thinned.context[-1] == 19
    assert not set(thinned.context) & {4, 12}
    unposed = select_views(20, "all", holdout_every=8)
    assert unposed.context == list(range(20)) and unposed.targets == []
    assert select_views(2, "all", holdout_every=2, camera_centers=centres[:2]).context == [0, 1]
    sparse = select_views(20, "sparse-2", camera_centers=centres)
    assert sparse.context == [0, 18] and sparse.targets == [9]
    with pytest.raises(ValueError, match="sparse-6"):
        select_views(20, "sparse-5")
    with pytest.raises(ValueError, match="72"):
        select_views(20, "dense-32")


def random_scene(sh_degree: int, n: int = 400, seed: int = 0) -> Gaussians:
    """Opaque coloured Gaussians filling the view of a camera at the origin looking down +z (OpenCV)."""
    g = torch.Generator().manual_seed(seed)
    z = 2.0 + 1.5 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * 1.3 * z[:, None] * SIZE / FOCAL
    sh = 0.3 * torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g)
    sh[:, 0] = torch.randn(n, 3, generator=g)
    return Gaussians(
        means=torch.cat([xy, z[:, None]], dim=1),
        log_scales=torch.log(0.06 + 0.06 * torch.rand(n, 3, generator=g)),
        quats=torch.randn(n, 4, generator=g),
        opacity_logits=torch.full((n,), 3.0),
        sh=sh,
        semantic=torch.randn(n, 2, generator=g),
        batch_index=torch.zeros(n, dtype=torch.long),
    )


def render(gaussians: Gaussians, c2w: torch.Tensor) -> dict:
    K = torch.tensor([[FOCAL, 0, SIZE / 2], [0, FOCAL, SIZE / 2], [0, 0, 1.0]])
    out = render_gaussians(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.sh, gaussians.semantic,
        c2w_to_w2c(c2w)[None], K[None], SIZE, SIZE, gaussians.sh_degree, backend="torch",
    )  # fmt: skip
    return {key: value[0] for key, value in out.items()}


def axis_angle(axis, degrees: float) -> torch.Tensor:
    axis = torch.tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return torch.linalg.matrix_exp(math.radians(degrees) * K)


@pytest.mark.parametrize("sh_degree", [1, 2])
def test_sim3_transform_of_gaussians_moves_the_rendered_scene(sh_degree):
    """Moving the Gaussians and the camera by one similarity leaves the image unchanged (view-dependent
    colour included) and scales the depth."""
    gaussians = random_scene(sh_degree)
    scale, rotation, translation = 1.7, axis_angle([0.3, -1.0, 0.5], 50.0), torch.tensor([0.3, -1.0, 2.0])
    moved = transform_gaussians(gaussians, scale, rotation, translation)
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.1, -0.05, 0.2])
    moved_c2w = torch.from_numpy(apply_sim3(c2w[None], (scale, rotation.numpy(), translation.numpy()))[0]).float()

    before, after = render(gaussians, c2w), render(moved, moved_c2w)
    assert before["alpha"].mean() > 0.7
    torch.testing.assert_close(after["rgb"], before["rgb"], atol=2e-4, rtol=0)
    torch.testing.assert_close(after["alpha"], before["alpha"], atol=2e-4, rtol=0)
    torch.testing.assert_close(after["depth"], scale * before["depth"], atol=2e-3, rtol=2e-4)
    torch.testing.assert_close(after["features"], before["features"], atol=2e-4, rtol=0)
    # The parameters themselves: means, scales, rotation matrices.
    r = rotation.float()
    torch.testing.assert_close(moved.means, scale * gaussians.means @ r.T + translation, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.log_scales, gaussians.log_scales + math.log(scale))
    torch.testing.assert_close(
        quat_to_matrix(moved.quats, "wxyz"), r @ quat_to_matrix(gaussians.quats, "wxyz"), atol=1e-5, rtol=0
    )
    assert torch.equal(moved.opacity_logits, gaussians.opacity_logits) and torch.equal(
        moved.semantic, gaussians.semantic
    )


def test_upright_frame_puts_the_cameras_up_along_z():
    # Cameras of a turntable, their up (OpenCV -y) along the world's +x.
    c2w = np.tile(np.eye(4), (6, 1, 1))
    for i, angle in enumerate(np.linspace(0, 1, 6)):
        right = np.array([0.0, np.cos(angle), np.sin(angle)])
        forward = np.array([0.0, -np.sin(angle), np.cos(angle)])
        c2w[i, :3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
        c2w[i, :3, 3] = [0.5, 0.2 * i, 1.0]
    scale, rotation, translation = upright_sim3(c2w)
    moved = apply_sim3(c2w, (scale, rotation, translation))
    assert scale == 1.0 and np.isclose(np.linalg.det(rotation), 1.0)
    np.testing.assert_allclose(
        -moved[:, :3, 1].mean(axis=0) / np.linalg.norm(moved[:, :3, 1].mean(axis=0)), [0, 0, 1], atol=1e-9
    )
    np.testing.assert_allclose(moved[:, :3, 3].mean(axis=0), 0, atol=1e-9)
    assert moved[0, 0, 2] == pytest.approx(0, abs=1e-9) and moved[0, 1, 2] > 0  # first camera looks along +y


def test_refine_pose_recovers_a_perturbed_target_pose():
    """A target placed 2 degrees and 7 cm off its true pose comes back to it with the scene frozen."""
    gaussians = random_scene(sh_degree=0, n=300, seed=1)
    truth = torch.eye(4)
    target = render(gaussians, truth)["rgb"]
    start = truth.clone()
    start[:3, :3] = axis_angle([1.0, 2.0, -0.5], 2.0).float()
    start[:3, 3] = torch.tensor([0.04, -0.03, 0.05])

    refined = refine_pose(lambda pose: render(gaussians, pose)["rgb"], start, target)

    def errors(pose):
        angle = float(rotation_angle_deg(pose[:3, :3].double().numpy(), truth[:3, :3].double().numpy()))
        return angle, float((pose[:3, 3] - truth[:3, 3]).norm())

    (angle_before, shift_before), (angle_after, shift_after) = errors(start), errors(refined.c2w)
    assert refined.final_loss < 0.5 * refined.initial_loss
    assert angle_after < 0.3 * angle_before and shift_after < 0.3 * shift_before


def test_missing_shipped_weights_say_what_to_do(tmp_path, monkeypatch):
    from ff3r_ns.ns import reconstruct

    assert reconstruct.resolve_weights("/some/checkpoint") == "/some/checkpoint"
    monkeypatch.setattr(reconstruct, "SHIPPED_WEIGHTS", tmp_path / "ff3r-small")  # an installation without them
    with pytest.raises(WeightsUnavailable, match=r"shipped FF3R checkpoint is not there.*--pipeline\.weights"):
        reconstruct.resolve_weights(None)
    (tmp_path / "ff3r-small").mkdir()
    (tmp_path / "ff3r-small" / "model.safetensors").write_bytes(b"")
    assert reconstruct.resolve_weights(None) == str(tmp_path / "ff3r-small")


# --------------------------------------------------------------------------------------------------
# The real commands
# --------------------------------------------------------------------------------------------------


def checkpoint_state(run: Path) -> dict:
    (path,) = sorted((run / "nerfstudio_models").glob("step-*.ckpt"))
    return torch.load(path, map_location="cpu", weights_only=True)["pipeline"]


@pytest.mark.slow
def test_ns_train_saves_a_feed_forward_run(reconstruction):
    run, output = reconstruction
    num_context = ROOM_VIEWS - 2
    forward = re.search(r"FF3R forward pass: ([\d.]+) s for (\d+) views of 56x56 on cpu", output)
    assert forward and int(forward.group(2)) == num_context, output[-3000:]
    counts = re.search(r"Gaussians: ([\d,]+) pixel-aligned -> ([\d,]+) after voxelization", output)
    before, after = (int(counts.group(i).replace(",", "")) for i in (1, 2))
    assert before == num_context * 56 * 56 and 0 < after <= before
    assert "rotation" in output and "after Sim(3) alignment" in output

    report = json.loads((run / "reconstruction.json").read_text())
    assert report["context_frames"] == [i for i in range(ROOM_VIEWS) if i not in (3, 9)]
    assert report["target_frames"] == [3, 9] and report["gaussians"] == after
    assert set(report["pose_errors"]) == {
        "rotation_deg_mean",
        "rotation_deg_median",
        "translation_mean",
        "translation_median",
    }
    assert (run / "config.yml").is_file()
    config = (run / "config.yml").read_text()
    assert "sh_degree: 0" in config and "semantic_dim: 8" in config  # the tiny network's, saved after its pass

    # Two refinement steps ran (checkpoint of the last one); only the reconstruction is stored.
    assert [p.name for p in (run / "nerfstudio_models").glob("*.ckpt")] == ["step-000000001.ckpt"]
    state = checkpoint_state(run)
    assert all(
        key.startswith(("_model.gauss_params.", "_model.semantic_proj.", "_model.device", "state.")) for key in state
    )
    assert state["_model.gauss_params.means"].shape == (after, 3)
    assert state["state.depth"].shape == (num_context, 56, 56) and state["state.context_c2w"].shape == (
        num_context,
        4,
        4,
    )
    assert (run / "nerfstudio_models" / "step-000000001.ckpt").stat().st_size < 2_000_000


def test_config_yml_of_runs_saved_before_the_data_side_moved_loads(reconstruction):
    """Runs saved when the dataparser and datamanager lived in ff3r_ns.ns.reconstruct name them so in config.yml."""
    run, _ = reconstruction
    text = (run / "config.yml").read_text()
    assert "ff3r_ns.ns.scene_datamanager." in text
    old = text.replace("ff3r_ns.ns.scene_datamanager.", "ff3r_ns.ns.reconstruct.")
    for name in ("FF3RDataManagerConfig", "FF3RSceneDataParserConfig"):
        assert f"ff3r_ns.ns.reconstruct.{name}" in old
    assert yaml.load(old, Loader=yaml.Loader) == yaml.load(text, Loader=yaml.Loader)


@pytest.mark.slow
def test_ns_eval_reports_every_metric_or_why_not(evaluation):
    results = json.loads(evaluation.read_text())["results"]
    assert results["num_target_views"] == 2 and results["num_context_views"] == ROOM_VIEWS - 2
    for name in ("psnr", "ssim", "context_psnr", "miou", "accuracy", "depth_abs_rel", "depth_inlier_ratio_1.03",
                 "pose_rotation_deg_mean", "pose_translation_mean"):  # fmt: skip
        assert isinstance(results[name], float) and math.isfinite(results[name]), name
    assert 0 <= results["miou"] <= 1 and results["segmentation_text"] == "synthetic class embeddings"
    assert results["segmentation_views"] == "targets"
    assert len(results["refined_target_c2w"]) == 2 and math.isfinite(results["pose_refine_rotation_deg"])
    assert "LSeg" in results["absent"]["miou_lseg_pseudo"] and "miou_lseg_pseudo" not in results
    assert "forward_seconds" in results["absent"]["time_seconds"]
    if "lpips" in results:  # only where the VGG backbone is on disk
        assert math.isfinite(results["lpips"]) and "lpips" not in results["absent"]
    else:
        assert "vgg16" in results["absent"]["lpips"]
    assert all(isinstance(reason, str) and reason for reason in results["absent"].values())


@pytest.mark.slow
def test_ns_export_writes_the_models_gaussians(reconstruction, tmp_path):
    from ff3r_ns.ns.export import export_mask, read_gaussian_ply

    run, _ = reconstruction
    run_command("ns-export", "gaussian-splat", "--load-config", str(run / "config.yml"), "--output-dir", str(tmp_path))
    state = checkpoint_state(run)
    p = {
        name: state[f"_model.gauss_params.{name}"]
        for name in ("means", "scales", "quats", "features_dc", "features_rest", "opacities", "semantic")
    }
    gaussians = Gaussians(
        means=p["means"], log_scales=p["scales"], quats=p["quats"], opacity_logits=p["opacities"][:, 0],
        sh=torch.cat([p["features_dc"][:, None], p["features_rest"]], dim=1), semantic=p["semantic"][:, :0],
        batch_index=torch.zeros(len(p["means"]), dtype=torch.long),
    )  # fmt: skip
    expected = gaussians.select(export_mask(gaussians))
    exported = read_gaussian_ply(tmp_path / "splat.ply")
    assert len(exported) == len(expected) > 0
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh", "semantic"):
        assert torch.equal(getattr(exported, name), getattr(expected, name)), name


@pytest.mark.slow
def test_export_semantics_labels_gaussians_with_queries(reconstruction, tmp_path):
    from ff3r_ns.ns.export import read_gaussian_ply

    run, _ = reconstruction
    output = run_command(
        "scripts/export_semantics.py", "--load-config", str(run / "config.yml"), "--output-dir", str(tmp_path),
        "--queries", "chair;table;wall",
    )  # fmt: skip
    assert "Gaussians per query: chair:" in output
    data = np.load(tmp_path / "splat.semantics.npz")
    ply = read_gaussian_ply(tmp_path / "splat.ply")
    assert data["semantic_lifted"].shape == (len(ply), 512) and data["labels"].shape == (len(ply),)
    assert list(data["queries"]) == ["chair", "table", "wall"] and set(data["labels"]) <= {0, 1, 2}
    np.testing.assert_array_equal(data["semantic"], ply.semantic.numpy())


@pytest.mark.slow
@pytest.mark.realdata
def test_ns_train_on_a_real_unposed_image_folder(shared_data, tiny_weights, tmp_path):
    scene = shared_data / "vggt_room"
    if not scene.is_dir():
        pytest.skip(f"{scene} is absent")
    output = run_command(
        "ns-train", "ff3r", "--data", str(scene), "--pipeline.weights", str(tiny_weights),
        "--output-dir", str(tmp_path), "--timestamp", "run",
    )  # fmt: skip
    assert re.search(r"FF3R forward pass: [\d.]+ s for 8 views of 56x42 on cpu", output), output[-3000:]
    assert re.search(r"Gaussians: 18,816 pixel-aligned -> [\d,]+ after voxelization", output)
    run = tmp_path / "vggt_room" / "ff3r" / "run"
    report = json.loads((run / "reconstruction.json").read_text())
    assert report["target_frames"] == [] and report["pose_errors"] == {"absent": "the scene has no camera poses"}
    assert (run / "nerfstudio_models" / "step-000000000.ckpt").is_file()


@pytest.mark.slow
def test_ns_train_on_a_single_image_says_why_and_leaves_no_run(tmp_path):
    from PIL import Image

    (tmp_path / "scene").mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "scene" / "only.png")
    done = subprocess.run(
        [str(BIN / "ns-train"), "ff3r", "--data", str(tmp_path / "scene"), "--output-dir", str(tmp_path / "out")],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout + done.stderr)[-4000:]
    assert "needs at least 2 views" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not list((tmp_path / "out").rglob("config.yml")), "a run folder was left behind"
