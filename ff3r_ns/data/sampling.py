"""Which frames a training step or an evaluation sees, and how a frame is cropped to the model's size.

Training (paper Appendix A, "Training View Sampling Strategy"): a random temporal gap between the first
and the last frame, extra frames drawn inside that interval (at most 16 views in all), shuffled, every
image center-cropped and resized to 448x448.

Evaluation (paper Appendix A, "Evaluation Dataset"; DESIGN.md "Evaluation protocols"):
- sparse: 2/6/16 context views with "test interval 1", see :func:`sparse_split`;
- dense: 72 views chosen by spatial distribution, reduced to the 64/48/32-context settings that the paper
  calls 72/56/32 views, test interval 8, see :func:`dense_split`.

Pixel convention used by :func:`center_crop_resize`: continuous pixel coordinates in which pixel ``i``
covers ``[i, i + 1)`` (its centre is ``i + 0.5``), so an image of width ``W`` spans ``[0, W)`` and a
principal point in the middle of the image is ``cx = W / 2``. Intrinsics are assumed to be expressed in
this convention; cropping by ``x0`` pixels then shifts ``cx`` by ``-x0`` and resizing by a factor ``s``
multiplies ``fx`` and ``cx`` by ``s``, both exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, TypeVar, Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


# --------------------------------------------------------------------------------------------------
# Training views
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainViewSamplingConfig:
    """Sequential training-view sampling (paper Appendix A, following DUSt3R and VGGT)."""

    max_views: int = 16
    """Most context views per training sample (the paper's 16)."""
    min_views: int = 2
    """Fewest context views per training sample when the number of views is random."""
    random_num_views: bool = True
    """Draw the number of views uniformly in [min_views, max_views] per sample; False: always max_views."""
    min_gap: int = 15
    """Smallest temporal gap, in frames, between the first and the last sampled frame (raised to
    ``num_views - 1`` when needed so that the views can be distinct)."""
    max_gap: int = 96
    """Largest temporal gap, in frames, between the first and the last sampled frame (lowered to
    ``num_frames - 1`` for short scenes). The paper gives no number; 96 frames of a DL3DV video is a few
    seconds of capture, wide enough for real parallax yet with overlap between neighbours."""
    shuffle: bool = True
    """Shuffle the sampled views (the model does not rely on temporal order); False: increasing order."""
    image_size: int = 448
    """Side of the square that every image is center-cropped and resized to (the paper's 448)."""

    def __post_init__(self) -> None:
        if self.min_views < 2:
            raise ValueError(f"min_views must be at least 2, got {self.min_views}")
        if self.max_views < self.min_views:
            raise ValueError(f"max_views ({self.max_views}) must be >= min_views ({self.min_views})")
        if self.min_gap < 1 or self.max_gap < self.min_gap:
            raise ValueError(f"need 1 <= min_gap <= max_gap, got min_gap={self.min_gap}, max_gap={self.max_gap}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")


def sample_training_views(num_frames: int, config: TrainViewSamplingConfig, rng: np.random.Generator) -> list[int]:
    """Frame indices of one training sample: a random gap, then extra frames inside it.

    1. the number of views ``V`` is drawn in ``[min_views, max_views]`` (or is ``max_views``), then
       clamped to ``num_frames``;
    2. the gap ``G`` between the first and the last frame is drawn uniformly in
       ``[max(min_gap, V - 1), min(max(max_gap, V - 1), num_frames - 1)]``;
    3. the first frame ``a`` is uniform in ``[0, num_frames - 1 - G]``, the last is ``a + G``;
    4. ``V - 2`` distinct extra frames are drawn uniformly from the open interval ``(a, a + G)``;
    5. the ``V`` indices are shuffled (or sorted when ``config.shuffle`` is False).

    A scene with fewer frames than asked gives fewer views, never a repeated frame.

    Args:
        num_frames: number of frames of the scene, in capture order.
        config: sampling settings.
        rng: source of randomness (``np.random.default_rng(seed)``), so that a sample is reproducible.

    Returns:
        ``V`` distinct frame indices in ``[0, num_frames)``.
    """
    if num_frames < 2:
        raise ValueError(f"a training sample needs at least 2 frames, the scene has {num_frames}")
    if config.random_num_views:
        num_views = int(rng.integers(config.min_views, config.max_views + 1))
    else:
        num_views = config.max_views
    num_views = min(num_views, num_frames)

    high = min(max(config.max_gap, num_views - 1), num_frames - 1)
    low = min(max(config.min_gap, num_views - 1), high)
    gap = int(rng.integers(low, high + 1))
    first = int(rng.integers(0, num_frames - gap))
    last = first + gap
    extra = rng.choice(np.arange(first + 1, last), size=num_views - 2, replace=False)
    views = np.concatenate([[first, last], extra]).astype(np.int64)
    views = rng.permutation(views) if config.shuffle else np.sort(views)
    return [int(v) for v in views]


# --------------------------------------------------------------------------------------------------
# Center crop and resize
# --------------------------------------------------------------------------------------------------


def center_crop_box(height: int, width: int, size: Union[int, tuple[int, int]]) -> tuple[int, int, int, int]:
    """``(y0, x0, crop_height, crop_width)`` of the largest centred crop with the aspect of ``size``.

    ``size`` is an int (square) or ``(height, width)``. The crop side that is cut is rounded to the
    nearest integer and the offset is floored, so the crop is made of whole pixels.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if min(height, width, out_h, out_w) < 1:
        raise ValueError(f"image size ({height}, {width}) and target size ({out_h}, {out_w}) must be positive")
    if width * out_h > height * out_w:  # wider than the target: cut the sides
        crop_h, crop_w = height, max(1, min(width, round(height * out_w / out_h)))
    else:  # taller than (or as wide as) the target: cut top and bottom
        crop_h, crop_w = max(1, min(height, round(width * out_h / out_w))), width
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def center_crop_resize(
    image: ArrayOrTensor,
    intrinsics: Optional[ArrayOrTensor] = None,
    size: Union[int, tuple[int, int]] = 448,
    interpolation: Literal["antialias", "nearest"] = "antialias",
) -> tuple[ArrayOrTensor, Optional[ArrayOrTensor]]:
    """Center-crop ``image`` to the aspect of ``size``, resize it to ``size``, and adjust ``intrinsics``.

    Channel-last layout, as images are read (``ff3r_ns.data.images``): ``[H, W]`` or ``[H, W, C]``, numpy
    or torch; the result has the same type, dtype and layout. ``"antialias"`` (images) is bilinear with
    an antialiasing filter when shrinking (``torch.nn.functional.interpolate(..., antialias=True,
    align_corners=False)``, whose sampling grid is the pixel-centre convention of this module); integer
    images are rounded and clipped back to their dtype. ``"nearest"`` (depth, labels, masks) copies, for
    each output pixel, the input pixel that contains its centre, so values are never mixed.

    Intrinsics (``[..., 3, 3]``, in pixels of the input, pixel ``i`` covering ``[i, i + 1)``) become::

        cx' = (cx - x0) * out_w / crop_w      fx' = fx * out_w / crop_w
        cy' = (cy - y0) * out_h / crop_h      fy' = fy * out_h / crop_h

    (skew scaled with the x row as well).

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` image, depth map or label map.
        intrinsics: ``[..., 3, 3]`` pinhole matrices of the input, or None.
        size: output side (square) or ``(height, width)``.
        interpolation: ``"antialias"`` for images, ``"nearest"`` for depth and label maps.

    Returns:
        The ``[out_h, out_w(, C)]`` image and the adjusted intrinsics (None if none were given).
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an [H, W] or [H, W, C] image, got shape {tuple(image.shape)}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    height, width = int(image.shape[0]), int(image.shape[1])
    y0, x0, crop_h, crop_w = center_crop_box(height, width, (out_h, out_w))
    crop = image[y0 : y0 + crop_h, x0 : x0 + crop_w]

    if interpolation == "nearest":
        rows = np.minimum(((np.arange(out_h) + 0.5) * crop_h / out_h).astype(np.int64), crop_h - 1)
        cols = np.minimum(((np.arange(out_w) + 0.5) * crop_w / out_w).astype(np.int64), crop_w - 1)
        if isinstance(crop, torch.Tensor):
            rows_t = torch.as_tensor(rows, device=crop.device)
            cols_t = torch.as_tensor(cols, device=crop.device)
            resized = crop[rows_t][:, cols_t]
        else:
            resized = crop[rows][:, cols]
    elif interpolation == "antialias":
        resized = _resize_antialias(crop, out_h, out_w)
    else:
        raise ValueError(f"interpolation must be 'antialias' or 'nearest', got {interpolation!r}")

    if intrinsics is None:
        return resized, None
    scale_x, scale_y = out_w / crop_w, out_h / crop_h
    if isinstance(intrinsics, torch.Tensor):
        adjusted = intrinsics.clone() if intrinsics.is_floating_point() else intrinsics.double()
    else:
        adjusted = np.array(intrinsics, copy=True)
        if not np.issubdtype(adjusted.dtype, np.floating):
            adjusted = adjusted.astype(np.float64)
    adjusted[..., 0, 2] = adjusted[..., 0, 2] - x0
    adjusted[..., 1, 2] = adjusted[..., 1, 2] - y0
    adjusted[..., 0, :] = adjusted[..., 0, :] * scale_x
    adjusted[..., 1, :] = adjusted[..., 1, :] * scale_y
    return resized, adjusted


def _resize_antialias(image: ArrayOrTensor, out_h: int, out_w: int) -> ArrayOrTensor:
    """Bilinear antialiased resize of an ``[H, W(, C)]`` numpy array or tensor, type and dtype kept."""
    is_numpy = isinstance(image, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(image)) if is_numpy else image
    dtype = tensor.dtype
    chw = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    work = chw if chw.is_floating_point() else chw.to(torch.float32)
    if work.dtype in (torch.float16, torch.bfloat16):
        work = work.float()
    out = F.interpolate(work, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        out = out.round().clamp(info.min, info.max)
    out = out.to(dtype)
    out = out[0, 0] if tensor.ndim == 2 else out[0].permute(1, 2, 0)
    return out.contiguous().numpy() if is_numpy else out.contiguous()


# --------------------------------------------------------------------------------------------------
# Evaluation splits
# --------------------------------------------------------------------------------------------------


def evenly_spaced(num_items: int, count: int) -> np.ndarray:
    """``count`` distinct, increasing indices spread evenly over ``range(num_items)``, ends included.

    Index ``j`` is ``floor(j * (num_items - 1) / (count - 1) + 0.5)`` (round half up, so that the
    indices stay distinct whenever ``count <= num_items``).
    """
    if not 1 <= count <= num_items:
        raise ValueError(f"cannot pick {count} distinct indices out of {num_items}")
    if count == 1:
        return np.zeros(1, dtype=np.int64)
    return np.floor(np.arange(count) * ((num_items - 1) / (count - 1)) + 0.5).astype(np.int64)


def sparse_split(
    num_frames: int,
    num_context: int,
    test_interval: int = 1,
    stride: Optional[int] = None,
    start: int = 0,
) -> tuple[list[int], list[int]]:
    """Sparse-view split (2/6/16 context views, "test interval 1").

    Interpretation (paper Appendix A: "for the sparse-view setting, we use a test interval of 1"; Uni3R,
    whose ScanNet protocol FF3R compares against in Table 5, takes every second frame of the test
    sequence as a context view and the frames in between as targets; its 2-view case renders frame
    ``t`` from frames ``t - 1`` and ``t + 1``): walk the sequence with a step of ``stride`` frames;
    every ``(test_interval + 1)``-th step is a context view, the ``test_interval`` steps between two
    consecutive context views are targets. With the default test interval 1 and ``num_context = n``:

        context = start + stride * [0, 2, 4, ..., 2(n-1)]     (n views)
        target  = start + stride * [1, 3, ..., 2(n-1) - 1]    (n - 1 views, one between each pair)

    So targets are interpolated, never extrapolated. ``stride=1`` reproduces Uni3R on a sequence that is
    already subsampled (its test folders hold pre-selected frames); the default (None) takes the largest
    stride that fits, so that the context views span the whole sequence from ``start``.

    Args:
        num_frames: frames in the sequence, in capture order.
        num_context: context views (the paper uses 2, 6 and 16).
        test_interval: targets between two consecutive context views.
        stride: frames per step, or None for the widest span that fits.
        start: first context frame.

    Returns:
        ``(context, target)`` frame indices, each sorted.
    """
    if num_context < 2:
        raise ValueError(f"num_context must be at least 2, got {num_context}")
    if test_interval < 0:
        raise ValueError(f"test_interval must be >= 0, got {test_interval}")
    period = test_interval + 1
    steps = (num_context - 1) * period  # steps from the first to the last context view
    available = num_frames - 1 - start
    if stride is None:
        stride = available // steps if available > 0 else 0
    if stride < 1 or start < 0 or start + steps * stride > num_frames - 1:
        need = start + steps * max(stride, 1) + 1
        raise ValueError(
            f"a sparse split with {num_context} context views, test interval {test_interval}, stride "
            f"{max(stride, 1)} and start {start} needs at least {need} frames; the sequence has {num_frames}. "
            "Use fewer context views, a smaller stride or an earlier start."
        )
    positions = start + stride * np.arange(steps + 1)
    is_context = np.arange(steps + 1) % period == 0
    return [int(i) for i in positions[is_context]], [int(i) for i in positions[~is_context]]


def farthest_point_sampling(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """Greedy farthest-point sampling: ``k`` indices of ``points`` ``[N, D]``, in the order picked.

    Starts at ``start``; each next pick is the point whose distance to the nearest picked point is
    largest (ties go to the lowest index; already-picked points are never picked again, so duplicated
    points are fine). Deterministic.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must be [N, D], got shape {points.shape}")
    num_points = points.shape[0]
    if not 1 <= k <= num_points:
        raise ValueError(f"cannot pick {k} distinct points out of {num_points}")
    if not 0 <= start < num_points:
        raise ValueError(f"start index {start} is outside [0, {num_points})")
    picked = np.empty(k, dtype=np.int64)
    picked[0] = start
    nearest = np.linalg.norm(points - points[start], axis=1)
    nearest[start] = -np.inf
    for j in range(1, k):
        picked[j] = int(np.argmax(nearest))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[picked[j]], axis=1))
        nearest[picked[: j + 1]] = -np.inf
    return picked


DENSE_POOL_SIZE = 72
"""Views first selected by spatial distribution in the dense setting (paper Appendix A)."""

DENSE_CONTEXT_VIEWS = {72: 64, 56: 48, 32: 32}
"""Dense setting as the paper names it (views sampled) -> number of context views it evaluates."""


def dense_split(
    num_frames: int,
    camera_centers: Optional[np.ndarray] = None,
    num_sampled: int = 72,
    test_every: int = 8,
) -> tuple[list[int], list[int]]:
    """Dense-view split: 72 views by spatial distribution, 8 targets, 64/48/32 context views.

    The paper (after AnySplat) samples 72 views "based on spatial distribution", downsamples them to 56
    and 32, uses a test interval of 8 (as 3DGS) and reports 64/48/32 context views. Those numbers do not
    all follow from one rule (every 8th of 72 views leaves 63, of 56 leaves 49, of 32 leaves 28), so we
    fix the rule that yields exactly the published context counts, with one target set for all three:

    1. pool: 72 views by farthest-point sampling on the camera centres starting at frame 0 when poses
       are given, else evenly spaced in time (:func:`evenly_spaced`); then ordered by time;
    2. targets: every ``test_every``-th view of the ordered pool, skipping the first and keeping the last
       as context (positions 8, 16, ..., 64): 8 targets, each between two context views;
    3. context: the other 64 pool views, downsampled evenly in time to ``DENSE_CONTEXT_VIEWS[num_sampled]``
       views, i.e. 64 for "72 views" (72 = 64 + 8), 48 for "56 views" (56 = 48 + 8) and 32 for
       "32 views" (the paper's context count; 40 frames are read in that setting).

    Args:
        num_frames: frames in the sequence (at least 72).
        camera_centers: ``[num_frames, 3]`` camera centres (any consistent units), or None when the
            poses are unknown.
        num_sampled: the paper's setting, 72, 56 or 32.
        test_every: test interval inside the pool.

    Returns:
        ``(context, target)`` frame indices, each sorted.
    """
    if test_every < 1:
        raise ValueError(f"test_every must be at least 1, got {test_every}")
    if num_sampled not in DENSE_CONTEXT_VIEWS:
        raise ValueError(f"num_sampled must be one of {sorted(DENSE_CONTEXT_VIEWS)}, got {num_sampled}")
    if num_frames < DENSE_POOL_SIZE:
        raise ValueError(
            f"the dense protocol selects {DENSE_POOL_SIZE} views, the sequence has only {num_frames} frames; "
            "use sparse_split for short sequences"
        )
    if camera_centers is not None:
        camera_centers = np.asarray(camera_centers, dtype=np.float64)
        if camera_centers.shape != (num_frames, 3):
            raise ValueError(f"camera_centers must be [{num_frames}, 3], got shape {camera_centers.shape}")
        pool = np.sort(farthest_point_sampling(camera_centers, DENSE_POOL_SIZE, start=0))
    else:
        pool = evenly_spaced(num_frames, DENSE_POOL_SIZE)

    is_target = np.zeros(DENSE_POOL_SIZE, dtype=bool)
    is_target[test_every : DENSE_POOL_SIZE - 1 : test_every] = True
    candidates = pool[~is_target]
    num_context = DENSE_CONTEXT_VIEWS[num_sampled]
    if num_context > len(candidates):
        raise ValueError(
            f"test_every={test_every} leaves {len(candidates)} context candidates in the pool of "
            f"{DENSE_POOL_SIZE}, fewer than the {num_context} context views of the {num_sampled}-view setting"
        )
    context = candidates[evenly_spaced(len(candidates), num_context)]
    return [int(i) for i in context], [int(i) for i in pool[is_target]]
