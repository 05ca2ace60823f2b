"""The evaluation protocol (``ff3r_ns.eval.evaluate``) on scenes whose truth is known.

A scene is rendered from Gaussians we construct, at cameras we choose, and written to disk as a nerfstudio
scene (images, depth, labels); a reconstruction made of the same Gaussians must score perfectly, known
perturbations must give hand-computed values, and a target listed at a perturbed pose must be brought
back by the per-target refinement.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ff3r_ns.data.readers import read_scene
from ff3r_ns.data.views import load_views
from ff3r_ns.eval.alignment import rotation_angle_deg
from ff3r_ns.eval.evaluate import ClassText, EvalConfig, Reconstruction, evaluate_reconstruction
from ff3r_ns.eval.prediction import gaussian_renderer
from ff3r_ns.eval.pseudo_labels import NO_LSEG, load_lseg_pseudo_labeler, lseg_pseudo_labeler
from ff3r_ns.network.cameras import opengl_to_opencv_c2w
from ff3r_ns.network.config import preset
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.semantic import LSegImageEncoder, lseg_key

SIZE, FOCAL = 40, 36.0
K = torch.tensor([[FOCAL, 0, SIZE / 2], [0, FOCAL, SIZE / 2], [0, 0, 1.0]])
NAMES = ("left", "right")
SH_C0 = 0.28209479177387814
NUM_FRAMES = 5
"""sparse-2 on 5 frames: context 0 and 4, target 2."""


def known_gaussians(n: int = 500, seed: int = 0) -> Gaussians:
    """Opaque Gaussians in front of cameras near the origin looking down +z; colours inside (0.15, 0.85) so
    that 8-bit images store them unclipped; semantic feature one-hot: "left" for x < 0, "right" otherwise."""
    g = torch.Generator().manual_seed(seed)
    z = 2.0 + 1.0 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * 1.6 * z[:, None] * SIZE / FOCAL
    colour = 0.15 + 0.7 * torch.rand(n, 3, generator=g)
    semantic = torch.stack([(xy[:, 0] < 0).float(), (xy[:, 0] >= 0).float()], dim=1)
    return Gaussians(
        means=torch.cat([xy, z[:, None]], dim=1),
        log_scales=torch.log(0.05 + 0.05 * torch.rand(n, 3, generator=g)),
        quats=torch.randn(n, 4, generator=g),
        opacity_logits=torch.full((n,), 4.0),
        sh=((colour - 0.5) / SH_C0)[:, None],
        semantic=semantic,
        batch_index=torch.zeros(n, dtype=torch.long),
    )


def rotation(axis, degrees: float) -> torch.Tensor:
    axis = torch.tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    skew = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return torch.linalg.matrix_exp(math.radians(degrees) * skew).float()


def true_poses() -> torch.Tensor:
    """OpenCV camera-to-world poses of the 5 frames: a small sideways dolly with a slight pan."""
    poses = torch.eye(4).repeat(NUM_FRAMES, 1, 1)
    for i in range(NUM_FRAMES):
        poses[i, :3, :3] = rotation([0.0, 1.0, 0.0], 2.0 * (i - 2))
        poses[i, :3, 3] = torch.tensor([0.05 * (i - 2), 0.01 * i, 0.0])
    return poses


def perturb(pose: torch.Tensor, degrees: float, shift: list[float]) -> torch.Tensor:
    out = pose.clone()
    out[:3, :3] = pose[:3, :3] @ rotation([1.0, 2.0, -0.5], degrees)
    out[:3, 3] = pose[:3, 3] + torch.tensor(shift)
    return out


def write_known_scene(root: Path, gaussians: Gaussians, listed: torch.Tensor) -> Path:
    """Renders the Gaussians at the true poses; writes images, depth (.npy) and labels, and a transforms.json
    that lists the poses ``listed`` (the truth, or a perturbation of it)."""
    root.mkdir(parents=True)
    render = gaussian_renderer(gaussians, (SIZE, SIZE), backend="torch")
    gl = opengl_to_opencv_c2w(listed)  # the flip is its own inverse
    frames = []
    for i, pose in enumerate(true_poses()):
        with torch.no_grad():
            out = render(pose, K, True)
        rgb = out["rgb"].clamp(0, 1).mul(255).round().byte().numpy()
        Image.fromarray(rgb).save(root / f"frame_{i}.png")
        np.save(root / f"depth_{i}.npy", out["depth"][..., 0].numpy().astype(np.float32))
        Image.fromarray((out["features"].argmax(dim=-1) + 1).byte().numpy()).save(root / f"label_{i}.png")
        frames.append({
            "file_path": f"frame_{i}.png", "depth_file_path": f"depth_{i}.npy", "semantic_file_path": f"label_{i}.png",
            "transform_matrix": gl[i].tolist(),
        })  # fmt: skip
    meta = {"fl_x": FOCAL, "fl_y": FOCAL, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE, "h": SIZE, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def exact_reconstruction(gaussians: Gaussians, context: list[int]) -> Reconstruction:
    """The Gaussians themselves, with the true context cameras and the true depth."""
    render = gaussian_renderer(gaussians, (SIZE, SIZE), backend="torch")
    poses = true_poses()[context]
    with torch.no_grad():
        depth = torch.stack([render(pose, K)["depth"][..., 0] for pose in poses])
    return Reconstruction(
        render=render,
        classify=lambda features, text: features @ text.T,
        context_indices=context,
        context_c2w=poses,
        context_intrinsics=K.expand(len(context), 3, 3),
        image_hw=(SIZE, SIZE),
        depth=depth,
    )


def run(root: Path, reconstruction: Reconstruction, steps: int = 0, **kwargs):
    scene = read_scene(root)
    context = load_views(scene, reconstruction.context_indices, (SIZE, SIZE), depth=True, labels=True)
    text = ClassText(NAMES, torch.eye(2), "one-hot classes")
    config = EvalConfig(pose_steps=steps, lpips_weights=str(root / "no-vgg.pth"), progress=False)
    return evaluate_reconstruction(reconstruction, scene, context, [2], text, config, **kwargs).summary()


@pytest.fixture(scope="module")
def gaussians() -> Gaussians:
    return known_gaussians()


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory, gaussians) -> Path:
    return write_known_scene(tmp_path_factory.mktemp("known") / "scene", gaussians, true_poses())


def test_the_exact_reconstruction_scores_perfectly(scene_root, gaussians):
    results = run(scene_root, exact_reconstruction(gaussians, [0, 4]))
    # 8-bit storage alone gives ~59 dB (uniform rounding error of 1/255): far above any real reconstruction.
    assert results["psnr"] > 50 and results["context_psnr"] > 50
    assert results["ssim"] > 0.999 and results["context_ssim"] > 0.999
    assert results["miou"] == 1.0 and results["accuracy"] == 1.0 and results["segmentation_views"] == "targets"
    assert results["per_class_iou"] == {"left": 1.0, "right": 1.0}
    assert results["depth_abs_rel"] < 1e-5 and results["depth_inlier_ratio_1.03"] == 1.0
    assert results["pose_rotation_deg_mean"] < 1e-3 and results["pose_translation_mean"] < 1e-6
    assert results["num_context_views"] == 2 and results["num_target_views"] == 1
    absent = results["absent"]
    assert "LPIPS" in absent["lpips"] and "time_seconds" in absent
    assert absent["miou_lseg_pseudo"] == absent["accuracy_lseg_pseudo"] == "no LSeg weights were given for the pseudo-labels"


def test_known_perturbations_give_hand_computed_metrics(scene_root, gaussians):
    """A colour offset of 0.05 is PSNR 20 log10(1 / 0.05) = 26.02 dB; a second camera turned by 3 degrees is a
    mean rotation error of 1.5 degrees; an affine depth (2 d + 0.5) is AbsRel 0 after the per-image fit."""
    exact = exact_reconstruction(gaussians, [0, 4])
    brighter = lambda pose, K, features=False: {**exact.render(pose, K, features), "rgb": exact.render(pose, K)["rgb"] + 0.05}  # noqa: E731
    turned = exact.context_c2w.clone()
    turned[1] = perturb(turned[1], 3.0, [0.0, 0.0, 0.0])
    reconstruction = Reconstruction(
        render=brighter, classify=exact.classify, context_indices=[0, 4], context_c2w=turned,
        context_intrinsics=exact.context_intrinsics, image_hw=(SIZE, SIZE), depth=2 * exact.depth + 0.5, seconds=0.25,
    )  # fmt: skip
    results = run(scene_root, reconstruction)
    assert results["psnr"] == pytest.approx(20 * math.log10(1 / 0.05), abs=0.02)
    assert results["pose_rotation_deg_mean"] == pytest.approx(1.5, abs=1e-3)
    assert results["depth_abs_rel"] < 1e-5
    assert results["time_seconds"] == 0.25 and "time_seconds" not in results["absent"]


def test_refinement_brings_a_perturbed_target_pose_back(tmp_path, gaussians):
    """The target's image was rendered at its true pose but the scene lists it 2 degrees and 4 cm off: the
    protocol's refinement must land within a third of that of the truth, and its PSNR must rise."""
    listed = true_poses()
    listed[2] = perturb(listed[2], 2.0, [0.03, -0.02, 0.02])
    root = write_known_scene(tmp_path / "scene", gaussians, listed)
    reconstruction = exact_reconstruction(gaussians, [0, 4])
    unrefined, refined = run(root, reconstruction, steps=0), run(root, reconstruction, steps=50)

    truth = true_poses()[2].double()
    pose = torch.tensor(refined["refined_target_c2w"][0], dtype=torch.float64)
    angle = float(rotation_angle_deg(pose[:3, :3].numpy(), truth[:3, :3].numpy()))
    shift = float((pose[:3, 3] - truth[:3, 3]).norm())
    assert angle < 2.0 / 3 and shift < math.sqrt(0.03**2 + 0.02**2 + 0.02**2) / 3
    assert refined["psnr"] > unrefined["psnr"] + 3
    assert refined["pose_refine_rotation_deg"] > 1.0  # it moved the listed pose
    assert unrefined["pose_refine_rotation_deg"] == 0.0


def test_pseudo_label_mious_are_kept_apart_from_the_labels(scene_root, gaussians):
    """With a pseudo-labeler that says "left" everywhere, the pseudo mIoU is (share of left) / 2 (IoU of
    "left" is the share predicted left, "right" has none correct) and the accuracy the share; the labels'
    mIoU stays 1."""
    reconstruction = exact_reconstruction(gaussians, [0, 4])
    results = run(scene_root, reconstruction, pseudo_labeler=lambda images: torch.ones(images.shape[0], *images.shape[2:], dtype=torch.long))
    target = np.asarray(Image.open(scene_root / "label_2.png"))
    share = float(np.mean(target == 1))
    assert 0.2 < share < 0.8
    assert results["accuracy_lseg_pseudo"] == pytest.approx(share)
    assert results["miou_lseg_pseudo"] == pytest.approx(share / 2)
    assert results["miou"] == 1.0 and "miou_lseg_pseudo" not in results["absent"]


def test_lseg_pseudo_labeler_loads_lsegs_layout_and_argmaxes_the_prompts(tmp_path):
    config = preset("tiny").semantic
    torch.manual_seed(0)
    encoder = LSegImageEncoder(**{k: getattr(config, k) for k in config.__dataclass_fields__})
    state = {f"net.{lseg_key(name)}": value for name, value in encoder.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "demo_e200.ckpt")
    text = torch.randn(3, config.out_dim)
    images = torch.rand(2, 3, 40, 56)
    labeler = load_lseg_pseudo_labeler(tmp_path, ("a", "b", "c"), text=text, encoder_config=config)
    labels = labeler(images)
    assert labels.shape == (2, 40, 56) and labels.dtype == torch.int64 and set(labels.unique().tolist()) <= {1, 2, 3}
    swapped = load_lseg_pseudo_labeler(tmp_path, ("c", "b", "a"), text=text.flip(0), encoder_config=config)(images)
    assert torch.equal(swapped, 4 - labels)  # the argmax runs over the prompts, in their order
    none, why = lseg_pseudo_labeler(None, ("a",))
    assert none is None and why == NO_LSEG and "demo_e200.ckpt" in why
    none, why = lseg_pseudo_labeler(tmp_path / "elsewhere", ("a",))
    assert none is None and "demo_e200.ckpt" in why
