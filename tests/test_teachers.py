"""Teachers: targets in the normalized frame, from ground truth and from a (tiny) VGGT checkpoint."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ff3r_ns.data.readers import read_scene
from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.data.views import load_views
from ff3r_ns.network.cameras import c2w_to_w2c, decode_pose, unproject_depth
from ff3r_ns.network.config import preset
from ff3r_ns.network.weights import WeightsUnavailable
from ff3r_ns.training.teachers import DatasetGeometryTeacher, TrainBatch, VGGTTeacher, semantic_targets


def rotation_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("teachers") / "room", RoomConfig(seed=5, num_views=6, image_size=56)).parent


def test_dataset_teacher_encodes_a_known_camera():
    """Two views of a flat wall 2 units away; the second camera is the first moved 1 unit along its own x."""
    h, w, f = 4, 6, 5.0
    K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float64)
    first = torch.eye(4, dtype=torch.float64)
    first[:3, :3], first[:3, 3] = rotation_z(0.7), torch.tensor([3.0, -1.0, 2.0])  # any world frame
    offset = torch.eye(4, dtype=torch.float64)
    offset[0, 3] = 1.0
    c2w = torch.stack([first, first @ offset])[None]
    depth = torch.full((1, 2, h, w), 2.0, dtype=torch.float64)
    batch = TrainBatch(images=torch.zeros(1, 2, 3, h, w), intrinsics=K.expand(1, 2, 3, 3), camera_to_worlds=c2w, depth=depth)
    targets = DatasetGeometryTeacher()(batch)

    # The scale by hand: points of view 0 are 2 * K^-1 [u + .5, v + .5, 1]; view 1's are those moved by (1, 0, 0).
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    points = np.stack([(u - w / 2) / f * 2, (v - h / 2) / f * 2, np.full_like(u, 2.0)], -1).reshape(-1, 3)
    scale = np.concatenate([np.linalg.norm(points, axis=1), np.linalg.norm(points + [1, 0, 0], axis=1)]).mean()
    assert targets.scale.item() == pytest.approx(scale, rel=1e-6)

    fov_h, fov_w = 2 * math.atan(h / 2 / f), 2 * math.atan(w / 2 / f)
    expected = torch.tensor(
        [[0, 0, 0, 0, 0, 0, 1, fov_h, fov_w], [-1 / scale, 0, 0, 0, 0, 0, 1, fov_h, fov_w]], dtype=torch.float64
    )
    torch.testing.assert_close(targets.pose_enc[0], expected)
    torch.testing.assert_close(targets.depth, depth / scale)
    assert targets.top_fraction == 1.0 and bool((targets.depth_conf == 1).all())


def test_depth_target_is_the_scene_depth_in_the_normalized_frame(room):
    scene = read_scene(room)
    views = load_views(scene, [3, 0, 5], 56, depth=True)
    batch = TrainBatch(
        images=views.images[None], intrinsics=views.intrinsics[None], camera_to_worlds=views.camera_to_worlds[None],
        depth=views.depth[None],
    )  # fmt: skip
    targets = DatasetGeometryTeacher()(batch)
    scale = targets.scale[0]
    torch.testing.assert_close(targets.depth[0], views.depth / scale)

    # Unprojecting the target depth with the target cameras gives the scene's points, seen from view 3, / scale.
    w2c, K = decode_pose(targets.pose_enc[0].double(), (56, 56))
    torch.testing.assert_close(K, views.intrinsics.double(), rtol=1e-4, atol=1e-4)
    predicted = unproject_depth(targets.depth[0].double(), w2c, views.intrinsics.double())
    world = unproject_depth(views.depth.double(), c2w_to_w2c(views.camera_to_worlds.double())[:, :3], views.intrinsics.double())
    first_w2c = c2w_to_w2c(views.camera_to_worlds[0].double())
    expected = (world @ first_w2c[:3, :3].T + first_w2c[:3, 3]) / scale
    torch.testing.assert_close(predicted, expected, rtol=1e-4, atol=1e-4)
    assert predicted.norm(dim=-1).mean().item() == pytest.approx(1.0, rel=1e-4)  # VGGT's normalization


def test_dataset_teacher_needs_poses():
    with pytest.raises(ValueError, match="VGGT teacher"):
        DatasetGeometryTeacher()(TrainBatch(images=torch.zeros(1, 2, 3, 14, 14)))


def test_vggt_teacher_loads_a_checkpoint_and_predicts_in_the_normalized_frame(tmp_path):
    torch.manual_seed(0)
    config = preset("tiny")
    source = VGGTTeacher(config)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["point_head.weight"] = torch.zeros(2)  # VGGT's heads that FF3R has no use for are ignored
    save_file(state, str(tmp_path / "model.safetensors"))

    teacher = VGGTTeacher.from_weights(tmp_path, config)
    for key, value in source.state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.train().training

    targets = teacher(TrainBatch(images=torch.rand(1, 3, 3, 28, 28)))
    assert targets.pose_enc.shape == (1, 3, 9) and targets.depth.shape == (1, 3, 28, 28)
    torch.testing.assert_close(targets.pose_enc[0, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]), atol=1e-5, rtol=0)
    w2c, K = decode_pose(targets.pose_enc[0], (28, 28))
    points = unproject_depth(targets.depth[0], w2c, K)
    assert points.norm(dim=-1).mean().item() == pytest.approx(1.0, rel=1e-3)
    assert targets.top_fraction == 0.7 and bool((targets.depth_conf >= 1).all())


def test_vggt_teacher_without_weights_says_what_to_do(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        VGGTTeacher.from_weights(tmp_path / "missing.safetensors", preset("tiny"))


def test_semantic_targets():
    features = torch.rand(1, 2, 512, 4, 4)
    semantic_2d = torch.rand(1, 2, 512, 4, 4, requires_grad=True)
    batch = TrainBatch(images=torch.zeros(1, 2, 3, 8, 8), features=features.half())
    torch.testing.assert_close(semantic_targets("dataset", batch, semantic_2d), features, atol=1e-3, rtol=1e-3)
    lseg = semantic_targets("lseg", batch, semantic_2d)
    assert torch.equal(lseg, semantic_2d.detach()) and not lseg.requires_grad
    with pytest.raises(ValueError, match="lseg"):
        semantic_targets("dataset", TrainBatch(images=batch.images), semantic_2d)
