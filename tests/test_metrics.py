"""Image, depth and segmentation metrics against hand-computed values and brute-force references."""

import math
import warnings

import numpy as np
import pytest
import torch

from ff3r_ns.eval.metrics import (
    MetricUnavailable,
    depth_metrics,
    fit_scale_shift,
    lpips_metric,
    psnr,
    segmentation_metrics,
    ssim,
)

# ---------------------------------------------------------------------------- images


def test_psnr_by_hand():
    gt = torch.full((2, 3, 3, 8, 8), 0.5)
    pred = gt + 0.1  # MSE 0.01 -> 20 dB
    pred[1, 0] = gt[1, 0] + 0.01  # MSE 1e-4 -> 40 dB
    values = psnr(pred, gt)
    assert values.shape == (2, 3)
    torch.testing.assert_close(values[0], torch.full((3,), 20.0), rtol=0, atol=1e-4)
    torch.testing.assert_close(values[1, 0], torch.tensor(40.0), rtol=0, atol=1e-4)
    assert math.isinf(psnr(gt, gt)[0, 0].item())


def test_ssim_per_image():
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 3, 32, 32, generator=generator)
    pred = (gt + 0.2 * torch.randn(3, 3, 32, 32, generator=generator)).clamp(0, 1)
    pred[0] = gt[0]
    values = ssim(pred, gt)
    assert values.shape == (3,)
    assert values[0].item() == pytest.approx(1.0, abs=1e-6)
    assert values[1] < 0.95 and values[2] < 0.95
    torch.testing.assert_close(values[2:3], ssim(pred[2:3], gt[2:3]))
    with pytest.raises(ValueError, match="same shape"):
        ssim(pred, gt[:, :, :16])


def test_lpips_refuses_without_local_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torchvision cache
    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(MetricUnavailable, match="not found"):
        lpips_metric(images, images)
    with pytest.raises(MetricUnavailable, match="not found"):
        lpips_metric(images, images, weights=tmp_path / "missing.pth")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(MetricUnavailable, match="not a torchvision"):
        lpips_metric(images, images, weights=tmp_path / "wrong.pth", net="alex")


def test_lpips_with_local_weights_is_the_lpips_model(tmp_path):
    lpips = pytest.importorskip("lpips")

    torch.manual_seed(0)
    with warnings.catch_warnings():  # torchvision's deprecation notices inside lpips
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    # The same random backbone as a torchvision checkpoint: lpips keeps torchvision's layer index
    # inside each slice (net.slice2.3.weight is features.3.weight).
    state = reference.state_dict()
    backbone = {"features." + key.split(".", 2)[2]: state[key] for key in state if key.startswith("net.")}
    torch.save(backbone, tmp_path / "alexnet.pth")

    generator = torch.Generator().manual_seed(1)
    pred, gt = torch.rand(2, 3, 64, 64, generator=generator), torch.rand(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        expected = reference(pred * 2 - 1, gt * 2 - 1).flatten()
    values = lpips_metric(pred, gt, weights=tmp_path / "alexnet.pth", net="alex")
    assert values.shape == (2,)
    torch.testing.assert_close(values, expected)
    assert lpips_metric(gt, gt, weights=tmp_path / "alexnet.pth", net="alex").abs().max() < 1e-6


# ---------------------------------------------------------------------------- depth


def _brute_force_fit(pred, gt, num_refits=2, fraction=0.2):
    """Reference: numpy.linalg.lstsq on [p, 1], refit on the best 80% of all pixels, twice."""
    design = np.stack([pred, np.ones_like(pred)], axis=1)
    (s, t), *_ = np.linalg.lstsq(design, gt, rcond=None)
    for _ in range(num_refits):
        residuals = np.abs(s * pred + t - gt)
        order = sorted(range(len(pred)), key=lambda i: (residuals[i], i))
        keep = order[: len(pred) - int(fraction * len(pred))]
        (s, t), *_ = np.linalg.lstsq(design[keep], gt[keep], rcond=None)
    return s, t


def test_scale_shift_fit_matches_lstsq_and_brute_force_refits():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 5.0, size=(12, 10))
    pred = 0.3 * gt + 0.7 + rng.normal(scale=0.05, size=gt.shape)
    pred[rng.random(gt.shape) < 0.1] += 3.0  # outliers
    s0, t0 = fit_scale_shift(pred, gt, num_refits=0)
    (s_ref, t_ref), *_ = np.linalg.lstsq(np.stack([pred.ravel(), np.ones(pred.size)], 1), gt.ravel(), rcond=None)
    assert (s0, t0) == pytest.approx((s_ref, t_ref), rel=1e-10)
    s, t = fit_scale_shift(pred, gt)
    assert (s, t) == pytest.approx(_brute_force_fit(pred.ravel(), gt.ravel()), rel=1e-10)
    assert abs(s - 1 / 0.3) < abs(s0 - 1 / 0.3)  # the refits shrug off the outliers


def test_scale_shift_fit_ignores_gross_outliers_exactly():
    rng = np.random.default_rng(1)
    gt = rng.uniform(1.0, 4.0, size=400)
    pred = (gt - 0.5) / 2.0  # gt = 2 pred + 0.5
    gt[:20] += 3.0  # 5% gross outliers (flying pixels): all among the worst 20% after the first fit
    s, t = fit_scale_shift(pred, gt)
    assert (s, t) == pytest.approx((2.0, 0.5), abs=1e-9)


def test_depth_metrics_by_hand_without_alignment():
    gt = np.array([[1.0, 2.0], [4.0, 5.0]])
    pred = gt * np.array([[1.0, 1.02], [1.05, 0.97]])
    # |p-g|/g = 0, .02, .05, .03 -> 0.025; max(p/g, g/p) = 1, 1.02, 1.05, 1/0.97 = 1.0309 -> tau 0.5
    metrics = depth_metrics(pred, gt, align=False)
    assert metrics["abs_rel"] == pytest.approx(0.025)
    assert metrics["inlier_ratio_1.03"] == pytest.approx(0.5)


def test_depth_metrics_align_masks_and_batches():
    rng = np.random.default_rng(2)
    gt = rng.uniform(1.0, 3.0, size=(2, 16, 16))
    pred = torch.from_numpy(0.5 * gt - 0.2)  # affine: perfect after alignment
    mask = np.ones_like(gt, dtype=bool)
    mask[:, :4] = False
    pred[:, :4] = 1e6  # garbage where the mask is False
    gt[1, 5, 5] = 0.0  # unknown depth
    metrics = depth_metrics(pred, torch.from_numpy(gt), valid_mask=mask)
    assert metrics["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["inlier_ratio_1.03"] == 1.0
    # Non-positive aligned depth never counts as an inlier.
    single = depth_metrics(np.array([[-1.0, 1.0]]), np.array([[1.0, 1.0]]), align=False)
    assert single["inlier_ratio_1.03"] == 0.5 and single["abs_rel"] == pytest.approx(1.0)


def test_depth_metrics_skips_empty_images():
    gt = np.ones((2, 4, 4))
    gt[0] = 0.0
    with pytest.warns(UserWarning, match="image 0"):
        metrics = depth_metrics(2 * gt + 1, gt)
    assert metrics["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="no depth image"), pytest.warns(UserWarning):
        depth_metrics(np.ones((3, 3)), np.zeros((3, 3)))


# ---------------------------------------------------------------------------- segmentation


def test_segmentation_by_hand():
    gt = np.array(
        [
            [1, 1, 2, 2],
            [1, 1, 2, 2],
            [3, 3, 0, 0],
            [3, 3, 0, 0],
        ]
    )
    pred = np.array(
        [
            [1, 1, 2, 1],
            [1, 2, 2, 2],
            [3, 0, 5, 5],
            [3, 3, 5, 5],
        ]
    )
    # 12 valid pixels (gt != 0); correct: 3 (class 1) + 3 (class 2) + 3 (class 3) = 9 -> accuracy 0.75.
    # class 1: TP 3, FP 1 (pred 1 on gt 2), FN 1 -> 3/5; class 2: TP 3, FP 1, FN 1 -> 3/5;
    # class 3: TP 3, FP 0, FN 1 (pred 0) -> 3/4; class 5: predicted only on ignored pixels -> absent.
    result = segmentation_metrics(torch.from_numpy(pred), torch.from_numpy(gt), num_classes=8)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["per_class_iou"][1] == pytest.approx(0.6)
    assert result["per_class_iou"][2] == pytest.approx(0.6)
    assert result["per_class_iou"][3] == pytest.approx(0.75)
    assert all(math.isnan(result["per_class_iou"][c]) for c in (4, 5, 6, 7, 8))
    assert result["miou"] == pytest.approx((0.6 + 0.6 + 0.75) / 3)


def test_segmentation_counts_false_positives_of_absent_classes_and_sums_over_views():
    gt = np.array([[[1, 1], [1, 1]], [[2, 2], [2, 2]]])
    pred = np.array([[[1, 1], [1, 4]], [[2, 2], [2, 2]]])
    result = segmentation_metrics(pred, gt, num_classes=4)
    # class 1: 3/4, class 2: 4/4, class 4: 0/1 (only a false positive), class 3 absent.
    assert result["per_class_iou"][4] == 0.0 and math.isnan(result["per_class_iou"][3])
    assert result["miou"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    assert result["accuracy"] == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="ignore_index"):
        segmentation_metrics(np.ones((2, 2)), np.zeros((2, 2)))
