"""Geometry-guided feature warping (FF3R Sec. 3.2, Eq. 2-4).

The rendered feature map of a context view ``c`` is warped into a view ``t`` with ``t``'s predicted
depth, both views' intrinsics and their relative pose; the cosine distance between ``t``'s own features
and the warped ones, over pixels where the warp is trustworthy, is the loss. Features that agree
across views pay nothing; inconsistent ones (LSeg's per-view drift, Fig. 3) are pulled together.

Conventions (those of :mod:`ff3r_ns.network.cameras`):

- Extrinsics are OpenCV world-to-camera ``[R | t]``; intrinsics are in pixels of the depth maps.
- Pixel ``(u, v)`` has its centre at ``(u + 0.5, v + 0.5)`` and an image spans ``[0, W] x [0, H]``,
  which is exactly ``grid_sample``'s ``align_corners=False``: ``x = 0`` maps to -1 and ``x = W`` to +1.
- Feature maps may be coarser than the depth maps (rendered features are e.g. half resolution): the
  warp then runs at the feature resolution, with the depth maps resized bilinearly
  (``align_corners=False``, i.e. a 2x2 box average for an exact 2x reduction, centred on the coarse
  pixel) and the intrinsics scaled by the resize factors (no half-pixel shift with this convention).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ff3r_ns.network.checkpointing import chunked_sum
from ff3r_ns.network.cameras import project_points, scale_intrinsics, to_4x4, unproject_depth, w2c_to_c2w

ALL_PAIRS_MAX_VIEWS = 4
"""Up to this many views, the default pair set of Eq. 4 is every unordered pair (at most 6)."""

NEAREST_VIEWS = 2
"""When pairs are sampled, a pair joins a view to one of its this many nearest views (camera centres)."""


def relative_pose(
    w2c_t: Float[Tensor, "*batch r 4"], w2c_c: Float[Tensor, "*batch r 4"]
) -> Float[Tensor, "*batch 3 4"]:
    """``[R_{t->c} | T_{t->c}]``, mapping camera-``t`` coordinates to camera-``c`` coordinates.

    It is ``w2c_c @ inverse(w2c_t)``: ``R_{t->c} = R_c R_t^T`` and ``T_{t->c} = t_c - R_{t->c} t_t``.
    """
    return (to_4x4(w2c_c) @ to_4x4(w2c_to_c2w(w2c_t)))[..., :3, :]


def _resize_depth(depth: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(depth.shape[-2:]) == size:
        return depth
    return F.interpolate(depth[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _check_batch(name: str, x: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(x.shape)}")


def warp_features(
    feat_c: Float[Tensor, "b f h w"],
    depth_t: Float[Tensor, "b hd wd"],
    K_t: Float[Tensor, "b 3 3"],
    K_c: Float[Tensor, "b 3 3"],
    w2c_t: Float[Tensor, "b r 4"],
    w2c_c: Float[Tensor, "b r 4"],
    depth_c: Optional[Float[Tensor, "b hd wd"]] = None,
    depth_rel_tol: float = 0.05,
) -> tuple[Float[Tensor, "b f h w"], Bool[Tensor, "b h w"]]:
    """Warp view ``c``'s feature map into view ``t`` (Eq. 2) and say which pixels can be trusted.

    Every pixel centre ``x_t`` of view ``t`` is lifted with its depth, moved into camera ``c`` and
    projected there; ``feat_c`` is sampled bilinearly at the projection (``grid_sample``,
    ``align_corners=False``, border padding so that points in the outer half of an edge pixel read
    that pixel). A pixel is valid when its depth ``D_t`` and its projected depth ``z`` are positive,
    its projection falls inside view ``c`` (``[0, W] x [0, H]``) and, when ``depth_c`` is given, it
    is not occluded in view ``c``: ``|z - D_c(x_c)| <= depth_rel_tol * D_c(x_c)``, with ``D_c``
    sampled bilinearly like the features (at a depth edge the blend of both sides fails the test, so
    boundary pixels are dropped rather than trusted). The mask carries no gradient; the warped
    features are differentiable with respect to ``feat_c``, ``depth_t`` and the cameras.

    Args:
        feat_c: feature map of view ``c``, at the depth resolution or coarser. [b, f, h, w]
        depth_t: z-depth of view ``t``. [b, hd, wd]
        K_t, K_c: intrinsics of views ``t`` and ``c`` in pixels of the depth maps. [b, 3, 3]
        w2c_t, w2c_c: OpenCV world-to-camera extrinsics of views ``t`` and ``c``. [b, 3 or 4, 4]
        depth_c: z-depth of view ``c`` for the occlusion test; ``None`` skips the test. [b, hd, wd]
        depth_rel_tol: relative depth tolerance of the occlusion test.

    Returns:
        ``(warped, valid)``: ``feat_c`` seen from view ``t`` (``f_{c->t}``; zero where invalid),
        [b, f, h, w], and the valid mask ``M_{c->t}``, [b, h, w].
    """
    if feat_c.ndim != 4:
        raise ValueError(f"feat_c must have shape [b, f, h, w], got {list(feat_c.shape)}")
    if depth_t.ndim != 3 or depth_t.shape[0] != feat_c.shape[0]:
        raise ValueError(f"depth_t must have shape [b, hd, wd] with b={feat_c.shape[0]}, got {list(depth_t.shape)}")
    b, _, h, w = feat_c.shape
    hd, wd = depth_t.shape[-2:]
    if h > hd or w > wd:
        raise ValueError(f"feature maps ({h}x{w}) must not be finer than the depth maps ({hd}x{wd})")
    for name, K in (("K_t", K_t), ("K_c", K_c)):
        _check_batch(name, K, (b, 3, 3))
    for name, pose in (("w2c_t", w2c_t), ("w2c_c", w2c_c)):
        if pose.shape[0] != b or tuple(pose.shape[1:]) not in ((3, 4), (4, 4)):
            raise ValueError(f"{name} must have shape [{b}, 3, 4] or [{b}, 4, 4], got {list(pose.shape)}")
    if depth_c is not None:
        _check_batch("depth_c", depth_c, tuple(depth_t.shape))

    # Work at the feature resolution: resized depth, intrinsics scaled by the same factors.
    depth_t = _resize_depth(depth_t, (h, w))
    K_t = scale_intrinsics(K_t, w / wd, h / hd)
    K_c = scale_intrinsics(K_c, w / wd, h / hd)

    # Eq. 2: x_c = Pi(K_c (R_{t->c} D_t(x_t) K_t^-1 x_t + T_{t->c})).
    identity = torch.eye(3, 4, dtype=depth_t.dtype, device=depth_t.device).expand(b, 3, 4)
    points_t = unproject_depth(depth_t, identity, K_t).reshape(b, h * w, 3)  # camera-t coordinates
    uv, z = project_points(points_t, relative_pose(w2c_t, w2c_c), K_c)  # [b, hw, 2], [b, hw]

    u, v = uv.unbind(-1)
    valid = (depth_t.reshape(b, h * w) > 0) & (z > 0) & (u >= 0) & (u <= w) & (v >= 0) & (v <= h)
    scale = uv.new_tensor([2.0 / w, 2.0 / h])
    grid = torch.where(valid[..., None], uv * scale - 1, torch.zeros_like(uv)).reshape(b, h, w, 2)
    warped = F.grid_sample(feat_c, grid, mode="bilinear", padding_mode="border", align_corners=False)

    if depth_c is not None:
        with torch.no_grad():
            depth_c = _resize_depth(depth_c, (h, w))[:, None]
            depth_c_at = F.grid_sample(
                depth_c, grid, mode="bilinear", padding_mode="border", align_corners=False
            ).reshape(b, h * w)
            valid = valid & ((z - depth_c_at).abs() <= depth_rel_tol * depth_c_at)

    valid = valid.reshape(b, h, w)
    return warped * valid[:, None], valid


def feature_warp_distance(
    feat_t: Float[Tensor, "b f h w"],
    feat_c: Float[Tensor, "b f h w"],
    depth_t: Float[Tensor, "b hd wd"],
    K_t: Float[Tensor, "b 3 3"],
    K_c: Float[Tensor, "b 3 3"],
    w2c_t: Float[Tensor, "b r 4"],
    w2c_c: Float[Tensor, "b r 4"],
    depth_c: Optional[Float[Tensor, "b hd wd"]] = None,
    depth_rel_tol: float = 0.05,
) -> Float[Tensor, " b"]:
    """``L_dist(I_t, I_c)`` of Eq. 3, one value per batch element.

    The mean over valid pixels ``Omega`` of ``1 - cos(f_t(x_t), f_{c->t}(x_t))``, with ``f_{c->t}``
    and the mask from :func:`warp_features` (same arguments). A batch element without any valid pixel
    gives 0 (and zero gradients), never NaN.
    """
    if feat_t.shape != feat_c.shape:
        raise ValueError(
            f"feat_t and feat_c must have the same shape, got {list(feat_t.shape)} and {list(feat_c.shape)}"
        )
    warped, valid = warp_features(feat_c, depth_t, K_t, K_c, w2c_t, w2c_c, depth_c, depth_rel_tol)
    # Eq. 3: (1 / |Omega|) sum_{x_t in Omega} M_{c->t} (1 - cos(f_t, f_{c->t})).
    distance = 1 - F.cosine_similarity(feat_t, warped, dim=1)  # [b, h, w]
    mask = valid.to(distance.dtype)
    return (distance * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)


def view_pairs(
    extrinsics: Float[Tensor, "b v r 4"],
    pairs: Optional[list[tuple[int, int]]] = None,
    num_pairs: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Int[Tensor, "b p 2"]:
    """The view pairs ``P`` of Eq. 4, per batch element, each unordered (both directions are used).

    - ``pairs`` given: exactly those, for every batch element (``num_pairs`` must then be ``None``).
    - ``num_pairs`` given: that many distinct pairs drawn uniformly (with ``generator``) among the
      neighbouring pairs of each batch element, a pair being neighbouring when one view is among the
      other's :data:`NEAREST_VIEWS` nearest views by camera centre. Views reach the model shuffled,
      so neighbours are found from the cameras, not from the view order.
    - neither: every pair when ``v <= ALL_PAIRS_MAX_VIEWS``, otherwise ``v`` sampled neighbouring pairs.
    """
    if extrinsics.ndim != 4 or tuple(extrinsics.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsics must have shape [b, v, 3, 4] or [b, v, 4, 4], got {list(extrinsics.shape)}")
    b, v = extrinsics.shape[:2]
    device = extrinsics.device
    if v < 2:
        raise ValueError(f"feature warping needs at least 2 views, got {v}")
    if pairs is not None:
        if num_pairs is not None:
            raise ValueError("give either pairs or num_pairs, not both")
        if len(pairs) == 0:
            raise ValueError("pairs is empty; pass None to use the default pairs")
        seen: set[frozenset[int]] = set()
        for t, c in pairs:
            if not (0 <= t < v and 0 <= c < v) or t == c:
                raise ValueError(f"pair ({t}, {c}) must join two different views in [0, {v})")
            if frozenset((t, c)) in seen:
                raise ValueError(f"pair ({t}, {c}) is repeated; each pair already counts both directions (Eq. 4)")
            seen.add(frozenset((t, c)))
        return torch.tensor(pairs, dtype=torch.int64, device=device).expand(b, -1, -1)
    if num_pairs is None and v <= ALL_PAIRS_MAX_VIEWS:
        return torch.combinations(torch.arange(v, device=device), 2).expand(b, -1, -1)

    num_pairs = v if num_pairs is None else num_pairs
    k = min(NEAREST_VIEWS, v - 1)
    available = math.ceil(v * k / 2)  # every view has k neighbours; a pair serves at most two of them
    if not 1 <= num_pairs <= available:
        raise ValueError(
            f"num_pairs={num_pairs} must be in [1, {available}] for {v} views ({k} nearest neighbours each); "
            "pass pairs explicitly for other pair sets"
        )
    centres = w2c_to_c2w(extrinsics.detach())[..., :3, 3]  # [b, v, 3]
    distances = torch.cdist(centres, centres)
    distances.diagonal(dim1=-2, dim2=-1).fill_(math.inf)
    nearest = distances.topk(k, dim=-1, largest=False).indices  # [b, v, k]
    neighbours = torch.zeros(b, v, v, dtype=torch.bool, device=device).scatter_(-1, nearest, True)
    neighbours = (neighbours | neighbours.transpose(-1, -2)).triu(diagonal=1)
    keys = torch.rand(b, v, v, generator=generator, device=device)
    keys = torch.where(neighbours, keys, torch.full_like(keys, -1.0))
    chosen = keys.flatten(1).topk(num_pairs, dim=-1).indices  # [b, p]
    return torch.stack([chosen // v, chosen % v], dim=-1)


def feature_warping_loss(
    features: Float[Tensor, "b v f h w"],
    depths: Float[Tensor, "b v hd wd"],
    extrinsics: Float[Tensor, "b v r 4"],
    intrinsics: Float[Tensor, "b v 3 3"],
    pairs: Optional[list[tuple[int, int]]] = None,
    num_pairs: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    depth_rel_tol: float = 0.05,
    checkpoint_chunk: Optional[int] = None,
) -> Float[Tensor, ""]:
    """``L_warp`` of Eq. 4: ``sum_{(t, c) in P} L_dist(t, c) + L_dist(c, t)``, averaged over the batch.

    The pairs ``P`` come from :func:`view_pairs` (``pairs``, ``num_pairs``, ``generator``). As in the
    paper the pairs are summed, not averaged, so the loss grows with the number of pairs. The
    occlusion test uses the other view's depth (``depth_rel_tol``, see :func:`warp_features`).

    Args:
        features: rendered feature maps, at the depth resolution or coarser. [b, v, f, h, w]
        depths: predicted z-depth maps. [b, v, hd, wd]
        extrinsics: OpenCV world-to-camera extrinsics. [b, v, 3 or 4, 4]
        intrinsics: intrinsics in pixels of the depth maps. [b, v, 3, 3]
        checkpoint_chunk: warp that many directed pairs at a time, each chunk recomputed in the backward pass
            instead of keeping its gathered and warped maps (the same value and gradient, to float rounding).
    """
    if features.ndim != 5:
        raise ValueError(f"features must have shape [b, v, f, h, w], got {list(features.shape)}")
    b, v = features.shape[:2]
    if depths.ndim != 4 or tuple(depths.shape[:2]) != (b, v):
        raise ValueError(f"depths must have shape [{b}, {v}, hd, wd], got {list(depths.shape)}")
    _check_batch("intrinsics", intrinsics, (b, v, 3, 3))
    if tuple(extrinsics.shape[:2]) != (b, v):
        raise ValueError(f"extrinsics must have shape [{b}, {v}, 3, 4], got {list(extrinsics.shape)}")

    index = view_pairs(extrinsics, pairs, num_pairs, generator)  # [b, p, 2]
    t_index = torch.cat([index[..., 0], index[..., 1]], dim=1)  # both directions: [b, 2p]
    c_index = torch.cat([index[..., 1], index[..., 0]], dim=1)
    rows = torch.arange(b, device=features.device)[:, None]

    def distances(t_views: Tensor, c_views: Tensor) -> Tensor:
        def gather(x: Tensor, views: Tensor) -> Tensor:
            return x[rows, views].flatten(0, 1)

        distance = feature_warp_distance(
            gather(features, t_views),
            gather(features, c_views),
            gather(depths, t_views),
            gather(intrinsics, t_views),
            gather(intrinsics, c_views),
            gather(extrinsics, t_views),
            gather(extrinsics, c_views),
            depth_c=gather(depths, c_views),
            depth_rel_tol=depth_rel_tol,
        )
        # Eq. 4: sum over pairs and both directions.
        return distance.reshape(b, -1).sum(dim=1)

    return chunked_sum(distances, checkpoint_chunk, t_index, c_index, dim=1).mean()
