"""The losses of Eq. 9-13 against hand-computed values."""

import lpips
import pytest
import torch
import torchvision

from ff3r_ns.training.losses import (
    LossWeights,
    depth_distillation_loss,
    feature_loss,
    make_lpips,
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
