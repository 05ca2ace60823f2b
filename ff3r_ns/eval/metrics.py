"""Evaluation metrics: novel-view synthesis (PSNR, SSIM, LPIPS), depth (AbsRel, tau) and segmentation.

Conventions:
- images are channel-first ``[*batch, C, H, W]`` tensors in ``[0, 1]`` (torchmetrics' layout); each
  image metric returns one value per image, ``[*batch]``, and averaging is left to the caller;
- depth maps are ``[*batch, H, W]`` (numpy or torch) z-depth, 0 (or non-finite) where unknown;
- label maps are ``[*batch, H, W]`` integer class ids 1..num_classes, 0 meaning "no label"
  (``SceneData.label_paths``).

Protocol details (paper Sec. 4 and Appendix A, DESIGN.md "Evaluation protocols") are stated in each
function's docstring.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

ArrayLike = Union[np.ndarray, Tensor]

INLIER_THRESHOLD = 1.03
"""Depth inlier ratio tau counts pixels with max(p / g, g / p) below this."""
OUTLIER_FRACTION = 0.2
"""Share of the valid pixels with the largest residuals left out of each depth refit."""
NUM_REFITS = 2
"""Depth scale-and-shift refits after the first fit."""


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (e.g. no local LPIPS weights); the message says why."""


# --------------------------------------------------------------------------------------------------
# Novel-view synthesis
# --------------------------------------------------------------------------------------------------


def _check_images(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape or pred.ndim < 3:
        raise ValueError(
            f"pred and gt must be [*batch, C, H, W] images of the same shape, got {tuple(pred.shape)} "
            f"and {tuple(gt.shape)}"
        )


def psnr(
    pred: Float[Tensor, "*batch C H W"], gt: Float[Tensor, "*batch C H W"], data_range: float = 1.0
) -> Float[Tensor, "*batch"]:
    """Peak signal-to-noise ratio per image: ``10 log10(data_range^2 / MSE)`` in dB (inf when equal)."""
    _check_images(pred, gt)
    mse = ((pred.double() - gt.double()) ** 2).mean(dim=(-3, -2, -1))
    return (10.0 * torch.log10(data_range**2 / mse)).to(pred.dtype)


def ssim(
    pred: Float[Tensor, "*batch C H W"], gt: Float[Tensor, "*batch C H W"], data_range: float = 1.0
) -> Float[Tensor, "*batch"]:
    """Structural similarity per image (torchmetrics: Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03)."""
    _check_images(pred, gt)
    batch_shape = pred.shape[:-3]
    flat_pred = pred.reshape(-1, *pred.shape[-3:]).float()
    flat_gt = gt.reshape(-1, *gt.shape[-3:]).float()
    values = structural_similarity_index_measure(flat_pred, flat_gt, data_range=data_range, reduction="none")
    return values.reshape(batch_shape).to(pred.dtype)


def lpips_metric(
    pred: Float[Tensor, "*batch 3 H W"],
    gt: Float[Tensor, "*batch 3 H W"],
    weights: Optional[Union[str, Path]] = None,
    net: str = "vgg",
) -> Float[Tensor, "*batch"]:
    """LPIPS per image (images in [0, 1]), with a backbone read from a local file only.

    The network is built by :func:`ff3r_ns.training.losses.make_lpips` (the same LPIPS as the training
    loss): the linear layers ship inside the ``lpips`` package, the ImageNet backbone is the torchvision
    checkpoint at ``weights`` (e.g. ``vgg16-397923af.pth``) or, when None, in torchvision's cache
    ``$TORCH_HOME/hub/checkpoints/``. Nothing is downloaded. AnySplat reports LPIPS with ``net="vgg"``.

    Raises:
        MetricUnavailable: no backbone file, or a file that is not a torchvision checkpoint of ``net``;
            the message says which file to get. Never returns a stand-in value.
    """
    _check_images(pred, gt)
    model = _lpips_network(None if weights is None else str(weights), net)
    batch_shape = pred.shape[:-3]
    flat_pred = pred.reshape(-1, *pred.shape[-3:]).float()
    flat_gt = gt.reshape(-1, *gt.shape[-3:]).float()
    with torch.no_grad():
        values = model.to(flat_pred.device)(flat_pred, flat_gt, normalize=True)
    return values.reshape(batch_shape).to(pred.dtype)


@functools.lru_cache(maxsize=2)
def _lpips_network(weights: Optional[str], net: str) -> torch.nn.Module:
    """The LPIPS network for (weights, net), built once; failures are not cached."""
    from ff3r_ns.training.losses import make_lpips  # imports lpips and torchvision: only when needed

    try:
        return make_lpips(weights, net=net)
    except (FileNotFoundError, ValueError) as error:
        raise MetricUnavailable(f"LPIPS is unavailable: {error}") from error


# --------------------------------------------------------------------------------------------------
# Depth
# --------------------------------------------------------------------------------------------------


def _as_numpy(values: ArrayLike, dtype=np.float64) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _lstsq_scale_shift(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(s, t) minimising sum (s * pred + t - gt)^2 over 1D arrays (closed form, centred normal equations)."""
    pred_mean, gt_mean = pred.mean(), gt.mean()
    centred = pred - pred_mean
    variance = float(np.dot(centred, centred))
    if variance <= 1e-300:  # constant prediction: only the shift is determined
        return 0.0, float(gt_mean)
    scale = float(np.dot(centred, gt - gt_mean)) / variance
    return scale, float(gt_mean - scale * pred_mean)


def fit_scale_shift(
    pred: ArrayLike,
    gt: ArrayLike,
    valid_mask: Optional[ArrayLike] = None,
    num_refits: int = NUM_REFITS,
    outlier_fraction: float = OUTLIER_FRACTION,
) -> tuple[float, float]:
    """Least-squares scale and shift of one depth map to its ground truth, robust to outliers.

    1. fit ``(s, t)`` minimising ``sum (s p + t - g)^2`` over all valid pixels;
    2. ``num_refits`` times: compute ``|s p + t - g|`` on all valid pixels with the current fit, leave
       out the ``floor(outlier_fraction * n)`` pixels with the largest residuals (ties by pixel order)
       and refit on the rest. Every refit ranks all valid pixels anew; nothing is dropped for good.

    Args:
        pred, gt: ``[H, W]`` (any shape) depth maps.
        valid_mask: pixels to use; pixels with ``gt <= 0`` or non-finite values are never used.

    Returns:
        ``(s, t)`` as floats.
    """
    pred_np, gt_np = _as_numpy(pred), _as_numpy(gt)
    valid = _valid_depth(pred_np, gt_np, valid_mask)
    p, g = pred_np[valid], gt_np[valid]
    if p.size < 2:
        raise ValueError(f"a scale-and-shift fit needs at least 2 valid pixels, got {p.size}")
    scale, shift = _lstsq_scale_shift(p, g)
    num_dropped = int(np.floor(outlier_fraction * p.size))
    for _ in range(num_refits):
        if num_dropped == 0:
            break
        residuals = np.abs(scale * p + shift - g)
        keep = np.argsort(residuals, kind="stable")[: p.size - num_dropped]
        scale, shift = _lstsq_scale_shift(p[keep], g[keep])
    return scale, shift


def _valid_depth(pred: np.ndarray, gt: np.ndarray, valid_mask: Optional[ArrayLike]) -> np.ndarray:
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt depth must have the same shape, got {pred.shape} and {gt.shape}")
    valid = np.isfinite(pred) & np.isfinite(gt) & (gt > 0)
    if valid_mask is not None:
        mask = _as_numpy(valid_mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"valid_mask has shape {mask.shape}, depth has {gt.shape}")
        valid &= mask
    return valid


def depth_metrics(
    pred: ArrayLike,
    gt: ArrayLike,
    valid_mask: Optional[ArrayLike] = None,
    align: bool = True,
) -> dict[str, float]:
    """AbsRel and inlier ratio of depth maps, after a per-image scale-and-shift alignment.

    Per image: valid pixels are ``valid_mask & gt > 0 & finite``; with ``align`` the prediction becomes
    ``p' = s p + t`` with ``(s, t)`` from :func:`fit_scale_shift` (least squares, refit twice without the
    worst 20% residuals); the metrics are then taken over *all* valid pixels (outliers included):

        abs_rel = mean(|p' - g| / g)
        inlier_ratio_1.03 = mean(p' > 0 and max(p' / g, g / p') < 1.03)

    Images are averaged with equal weight. An image with fewer than 2 valid pixels is skipped with a
    warning.

    Args:
        pred, gt: ``[H, W]`` (one image, any shape of up to 2 dims) or ``[B, H, W]`` depth maps.
        valid_mask: same shape, True where the ground truth may be used; None: wherever ``gt > 0``.
        align: fit scale and shift per image (the paper's protocol); False: compare as given.

    Returns:
        ``{"abs_rel": float, "inlier_ratio_1.03": float}``.
    """
    pred_np, gt_np = _as_numpy(pred), _as_numpy(gt)
    valid = _valid_depth(pred_np, gt_np, valid_mask)
    if pred_np.ndim <= 2:  # one image
        pred_np, gt_np, valid = pred_np[None], gt_np[None], valid[None]
    abs_rels, inlier_ratios = [], []
    for index, (p, g, v) in enumerate(zip(pred_np, gt_np, valid)):
        if v.sum() < 2:
            warnings.warn(f"depth image {index} has {int(v.sum())} valid pixels; left out of the depth metrics")
            continue
        p, g = p[v], g[v]
        if align:
            scale, shift = fit_scale_shift(p, g)
            p = scale * p + shift
        abs_rels.append(float(np.mean(np.abs(p - g) / g)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(p / g, g / p)
        inlier_ratios.append(float(np.mean((p > 0) & (ratio < INLIER_THRESHOLD))))
    if not abs_rels:
        raise ValueError("no depth image has at least 2 valid pixels (gt > 0, finite, inside valid_mask)")
    return {"abs_rel": float(np.mean(abs_rels)), f"inlier_ratio_{INLIER_THRESHOLD}": float(np.mean(inlier_ratios))}


# --------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------


def segmentation_metrics(
    pred_ids: ArrayLike,
    gt_ids: ArrayLike,
    num_classes: int = 8,
    ignore_index: int = 0,
) -> dict[str, object]:
    """Scene-level mIoU, pixel accuracy and per-class IoU of label maps.

    Classes are ids ``1..num_classes``. Pixels whose ground truth is ``ignore_index`` are left out
    entirely; any other predicted id (0, or out of range) on a valid pixel counts as wrong. Counts are
    summed over all given images (pass all target views of a scene at once), then per class
    ``IoU_c = TP / (TP + FP + FN)``. A class absent from both the prediction and the ground truth
    (``TP + FP + FN = 0``) has IoU NaN and is excluded from the mean; accuracy is the share of valid
    pixels whose predicted id equals the ground truth.

    Returns:
        ``{"miou": float, "accuracy": float, "per_class_iou": {class_id: float or nan}}``.
    """
    pred_np = _as_numpy(pred_ids, dtype=np.int64)
    gt_np = _as_numpy(gt_ids, dtype=np.int64)
    if pred_np.shape != gt_np.shape:
        raise ValueError(f"pred_ids and gt_ids must have the same shape, got {pred_np.shape} and {gt_np.shape}")
    valid = gt_np != ignore_index
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError(f"every ground-truth pixel is ignore_index={ignore_index}: nothing to evaluate")
    p, g = pred_np[valid], gt_np[valid]
    per_class_iou: dict[int, float] = {}
    for class_id in range(1, num_classes + 1):
        in_pred, in_gt = p == class_id, g == class_id
        union = int(np.sum(in_pred | in_gt))
        per_class_iou[class_id] = float(np.sum(in_pred & in_gt)) / union if union > 0 else float("nan")
    present = [iou for iou in per_class_iou.values() if not np.isnan(iou)]
    return {
        "miou": float(np.mean(present)) if present else float("nan"),
        "accuracy": float(np.mean(p == g)),
        "per_class_iou": per_class_iou,
    }
