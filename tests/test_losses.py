"""The losses of Eq. 9-13 against hand-computed values; L_pts against a per-pixel loop."""

import math

import lpips
import pytest
import torch
import torchvision

from ff3r_ns.training.losses import (
    LossWeights,
    depth_distillation_loss,
    feature_loss,
    make_lpips,
    point_map_loss,
    pose_distillation_loss,
    rgb_loss,
    total_loss,
)


@pytest.fixture(scope="module")
def random_lpips() -> lpips.LPIPS:
    """LPIPS with a randomly initialized AlexNet (no ImageNet weights on our machines)."""
    torch.manual_seed(0)
    return lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval().requires_grad_(False)


def test_loss_weights_are_the_paper_values():
    weights = LossWeights()
    assert (weights.rgb, weights.lpips, weights.feat, weights.warp, weights.depth, weights.pose) == (
        1.0, 0.05, 0.1, 0.1, 1.0, 10.0,
    )  # fmt: skip
    assert weights.points == 0.0  # not in the paper: off unless asked for


def test_rgb_l1_matches_a_hand_value():
    gt = torch.zeros(2, 3, 4, 4)
    gt[..., :2, :] = 0.5  # half of the pixels off by 0.5
    assert rgb_loss(torch.zeros_like(gt), gt, None, 0.0).item() == pytest.approx(0.25)


def test_rgb_without_lpips_network_says_what_to_do():
    image = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="make_lpips.*set the LPIPS weight to 0"):
        rgb_loss(image, image, None, 0.05)


def test_rgb_lpips_term(random_lpips):
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(1, 2, 3, 64, 64, generator=generator)
    b = torch.rand(1, 2, 3, 64, 64, generator=generator)
    l1 = (a - b).abs().mean()
    assert rgb_loss(a, a, random_lpips, 0.05).item() == pytest.approx(0.0, abs=1e-6)
    assert rgb_loss(a, b, random_lpips, 0.05).item() > l1.item()  # LPIPS adds a positive term
    assert rgb_loss(a, b, random_lpips, 0.0).item() == pytest.approx(l1.item())


def test_feature_loss_zero_when_parallel_one_when_orthogonal():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(1, 2, 8, 4, 6, generator=generator)
    assert feature_loss(pred, 3.0 * pred).item() == pytest.approx(0.0, abs=1e-6)
    e0 = torch.zeros(1, 2, 8, 4, 6)
    e0[:, :, 0] = 1
    e1 = torch.zeros(1, 2, 8, 8, 12)  # teacher at twice the resolution: resized to the rendered one
    e1[:, :, 1] = 1
    assert feature_loss(e0, e1).item() == pytest.approx(1.0)
    assert feature_loss(e0, 2.0 * torch.roll(e1, -1, dims=2)).item() == pytest.approx(0.0, abs=1e-6)


def test_pose_distillation_weights_for_four_iterations():
    """Offsets 2, 0.5, 0, 0.5 (Huber 1.5, 0.125, 0, 0.125) with weights 0.6^3, 0.6^2, 0.6, 1, over n = 4."""
    teacher = torch.randn(2, 3, 9)
    preds = [teacher + offset for offset in (2.0, 0.5, 0.0, 0.5)]
    expected = (0.216 * 1.5 + 0.36 * 0.125 + 0.6 * 0.0 + 1.0 * 0.125) / 4
    assert pose_distillation_loss(preds, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_depth_distillation_uses_exactly_the_top_70_percent():
    """View 0: 100 valid pixels, the 70 most confident are off by 2 (the rest by 10): MSE 4.
    View 1: the 20 most confident pixels have no teacher depth, so 56 = 0.7 * 80 of the other 80 count,
    off by 1 (the rest by 10): MSE 1. Mean over views 2.5; the gradient marks the chosen pixels."""
    generator = torch.Generator().manual_seed(0)
    conf = torch.randperm(200, generator=generator).float().reshape(1, 2, 10, 10) + 1
    rank = conf.flatten(2).argsort(dim=-1, descending=True).argsort(dim=-1).reshape(1, 2, 10, 10)  # 0 = best
    teacher = torch.full((1, 2, 10, 10), 3.0)
    teacher[0, 1][rank[0, 1] < 20] = 0.0  # invalid teacher depth
    chosen = torch.zeros(1, 2, 10, 10, dtype=torch.bool)
    chosen[0, 0] = rank[0, 0] < 70
    chosen[0, 1] = (rank[0, 1] >= 20) & (rank[0, 1] < 76)
    error = torch.full((1, 2, 10, 10), 10.0)
    error[0, 0][chosen[0, 0]] = 2.0
    error[0, 1][chosen[0, 1]] = 1.0
    pred = (teacher + error).requires_grad_(True)
    loss = depth_distillation_loss(pred, teacher, conf)
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    assert torch.equal(pred.grad != 0, chosen)


def test_make_lpips_loads_a_local_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth.*LPIPS loss weight to 0"):
        make_lpips(None, "alex")
    torch.manual_seed(1)
    features = {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}
    checkpoint = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    checkpoint.parent.mkdir(parents=True)
    torch.save(features, checkpoint)
    model = make_lpips(None, "alex")  # found in torchvision's cache
    assert torch.equal(model.net.state_dict()["slice5.10.weight"], features["features.10.weight"])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert torch.equal(make_lpips(checkpoint, "alex").net.state_dict()["slice1.0.bias"], features["features.0.bias"])
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not a torchvision alex checkpoint"):
        make_lpips(other, "alex")


def test_total_loss_weights_each_term():
    terms = {name: torch.tensor(value) for name, value in zip(("rgb", "feat", "warp", "depth", "pose"), range(1, 6))}
    total, log = total_loss(terms, LossWeights())
    assert total.item() == pytest.approx(1 + 0.1 * 2 + 0.1 * 3 + 1.0 * 4 + 10.0 * 5)
    assert log == {"rgb": 1.0, "feat": 2.0, "warp": 3.0, "depth": 4.0, "pose": 5.0, "total": pytest.approx(55.5)}
    custom, _ = total_loss({"rgb": torch.tensor(2.0), "pose": torch.tensor(1.0)}, LossWeights(rgb=0.5, pose=0.0))
    assert custom.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown loss terms \\['lpips'\\]"):
        total_loss({"lpips": torch.tensor(1.0)}, LossWeights())


def _pose_enc(rotations_deg, translations, fov_deg, hw):
    """Pose encodings of world-to-cameras rotating about y by the given angles."""
    from ff3r_ns.network.cameras import encode_pose

    extrinsics, intrinsics = [], []
    for angle, t in zip(rotations_deg, translations):
        a = math.radians(angle)
        R = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
        extrinsics.append(torch.cat([R, torch.tensor(t)[:, None]], dim=1))
        f = (hw[1] / 2) / math.tan(math.radians(fov_deg) / 2)
        intrinsics.append(torch.tensor([[f, 0, hw[1] / 2], [0, f, hw[0] / 2], [0, 0, 1.0]]))
    return encode_pose(torch.stack(extrinsics), torch.stack(intrinsics), hw)[None].double()


def _points_by_hand(depth, pose_enc, hw):
    """World point of every pixel: R^T (z K^-1 [u + 0.5, v + 0.5, 1] - t), one pixel at a time."""
    h, w = hw
    points = torch.zeros(*depth.shape, 3, dtype=torch.float64)
    for view in range(depth.shape[1]):
        q = pose_enc[0, view, 3:7].double()
        x, y, z, qw = (float(v) for v in q / q.norm())  # xyzw, normalized as decoding does
        R = torch.tensor([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * qw), 2 * (x * z + y * qw)],
            [2 * (x * y + z * qw), 1 - 2 * (x * x + z * z), 2 * (y * z - x * qw)],
            [2 * (x * z - y * qw), 2 * (y * z + x * qw), 1 - 2 * (x * x + y * y)],
        ], dtype=torch.float64)  # fmt: skip
        t = pose_enc[0, view, :3].double()
        fy = (h / 2) / math.tan(float(pose_enc[0, view, 7]) / 2)
        fx = (w / 2) / math.tan(float(pose_enc[0, view, 8]) / 2)
        for v in range(h):
            for u in range(w):
                d = float(depth[0, view, v, u])
                cam = torch.tensor([(u + 0.5 - w / 2) / fx * d, (v + 0.5 - h / 2) / fy * d, d], dtype=torch.float64)
                points[0, view, v, u] = R.T @ (cam - t)
    return points


def test_point_map_loss_matches_a_per_pixel_loop():
    hw = (5, 6)
    generator = torch.Generator().manual_seed(0)
    teacher_enc = _pose_enc([0.0, 20.0, -35.0], [[0, 0, 0], [0.3, -0.1, 0.2], [-0.4, 0.2, 0.1]], 60.0, hw)
    pred_enc = _pose_enc([0.0, 26.0, -30.0], [[0, 0, 0], [0.2, -0.1, 0.25], [-0.4, 0.1, 0.1]], 55.0, hw)
    teacher_depth = 1 + torch.rand(1, 3, *hw, generator=generator, dtype=torch.float64)
    teacher_depth[0, 2, 0, :] = 0  # unknown depth: never scored
    pred_depth = 1 + torch.rand(1, 3, *hw, generator=generator, dtype=torch.float64)
    conf = torch.rand(1, 3, *hw, generator=generator, dtype=torch.float64)

    loss = point_map_loss(pred_depth, pred_enc, teacher_depth, teacher_enc, conf, top_fraction=0.5)

    distances = (_points_by_hand(pred_depth, pred_enc, hw) - _points_by_hand(teacher_depth, teacher_enc, hw)).norm(dim=-1)
    per_view = []
    for view in range(3):
        valid = teacher_depth[0, view] > 0
        keep = round(0.5 * int(valid.sum()))
        ranked = conf[0, view][valid].argsort(descending=True)[:keep]
        per_view.append(distances[0, view][valid][ranked].mean())
    torch.testing.assert_close(loss, torch.stack(per_view).mean(), rtol=1e-9, atol=1e-12)


def test_point_map_loss_is_zero_at_the_teacher_and_moves_only_the_wrong_view():
    hw = (4, 4)
    enc = _pose_enc([0.0, 15.0, 40.0], [[0, 0, 0], [0.2, 0, 0.1], [0.1, 0.1, -0.3]], 70.0, hw)
    depth = torch.full((1, 3, *hw), 2.0, dtype=torch.float64)
    conf = torch.ones_like(depth)
    pred_enc = enc.clone().requires_grad_(True)
    assert point_map_loss(depth, pred_enc, depth, enc, conf).item() == 0.0

    wrong = enc.clone()
    wrong[0, 1, 3:7] = _pose_enc([0.0, 25.0, 40.0], [[0, 0, 0]] * 3, 70.0, hw)[0, 1, 3:7]  # view 1 turned by 10 deg
    wrong.requires_grad_(True)
    loss = point_map_loss(depth, wrong, depth, enc, conf)
    loss.backward()
    assert loss.item() > 0.1  # 10 degrees at depth 2: points move about 0.35, averaged over the three views
    assert wrong.grad[0, 1, 3:7].abs().sum() > 0  # the wrong rotation is pushed back
    assert wrong.grad[0, [0, 2]].abs().sum() == 0  # the right views get no gradient
    assert torch.isfinite(wrong.grad).all()
    with pytest.raises(ValueError, match="pose encodings be"):
        point_map_loss(depth, enc[:, :2], depth, enc, conf)
