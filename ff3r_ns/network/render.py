"""Rendering 3D Gaussians to RGB, depth and semantic-feature maps in one pass.

``render_gaussians`` evaluates the SH colors per camera itself and rasterizes ``[rgb, features]`` with
gsplat's ``"RGB+ED"`` mode, so color, features and depth share one sort and one blend. Two backends
compute the same thing:

- ``"gsplat"``: gsplat's CUDA ``rasterization`` (CUDA tensors only).
- ``"torch"``: gsplat's pure-PyTorch projection (``_quat_scale_to_covar_preci``,
  ``_fully_fused_projection``, ``_spherical_harmonics``) and our vectorized tile compositor, which
  follows gsplat's CUDA kernel rule for rule (see :func:`_rasterize_torch`). It runs anywhere,
  is differentiable through autograd, and exists so that tests and CPU machines render too.

Conventions: ``viewmats`` are OpenCV world-to-camera matrices, ``Ks`` pinhole intrinsics in pixels,
and pixel ``(u, v)`` is sampled at its centre ``(u + 0.5, v + 0.5)`` (see ``cameras.py``).
Depth is gsplat's "ED", the alpha-normalized expected z-depth ``sum_i w_i z_i / sum_i w_i`` (0 where
nothing was hit), so it is a depth in scene units even at soft edges; ``alpha = sum_i w_i``.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from gsplat import rasterization, spherical_harmonics
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics
from jaxtyping import Float
from torch import Tensor

from ff3r_ns.network.cameras import PIXEL_CENTER, to_4x4, w2c_to_c2w

Backend = Literal["auto", "gsplat", "torch"]

# Constants of gsplat's rasterizer (gsplat/cuda/include/Common.h, RasterizeToPixels3DGSFwd.cu).
ALPHA_THRESHOLD = 1.0 / 255.0
"""A Gaussian whose alpha at a pixel is below this is skipped there."""
MAX_ALPHA = 0.999
"""Alpha is clamped to this so that one Gaussian never makes a pixel fully opaque."""
MIN_TRANSMITTANCE = 1e-4
"""A pixel stops blending before the Gaussian that would take its transmittance to this or below."""
BLUR_2D = 0.3
"""Added to the projected 2D covariance (pixels^2) so that every Gaussian covers about a pixel."""
TILE_SIZE = 16
"""Side of the square tiles that Gaussians are binned into, in pixels."""
MAX_EXTENT_SIGMAS = 3.33
"""Bounding-box half-size in standard deviations (opacity-aware boxes are tighter)."""

# Elements (tiles x Gaussians per tile x pixels per tile) blended at once by the torch compositor:
# bounds its memory at a few hundred MB with autograd while keeping the Python loop short.
_CHUNK_ELEMENTS = 1 << 22
# Tiles in one chunk have Gaussian counts within this ratio, bounding the padding to the chunk's maximum.
_CHUNK_PADDING = 1.25


def render_gaussians(
    means: Float[Tensor, "n 3"],
    quats: Float[Tensor, "n 4"],
    scales: Float[Tensor, "n 3"],
    opacities: Float[Tensor, " n"],
    sh_coeffs: Float[Tensor, "n k 3"],
    features: Optional[Float[Tensor, "n f"]],
    viewmats: Float[Tensor, "c 4 4"],
    Ks: Float[Tensor, "c 3 3"],
    width: int,
    height: int,
    sh_degree: int,
    near: float = 0.01,
    far: float = 1e10,
    backend: Backend = "auto",
    background: Optional[Float[Tensor, "c 3"]] = None,
) -> dict[str, Optional[Tensor]]:
    """Render color, expected depth, opacity and (optionally) features of Gaussians in ``c`` cameras.

    Args:
        means: Gaussian centres in world coordinates. [n, 3]
        quats: rotations as quaternions in gsplat's ``wxyz`` order (need not be normalized). [n, 4]
        scales: activated (positive) standard deviations along the rotated axes. [n, 3]
        opacities: activated opacities in [0, 1]. [n]
        sh_coeffs: SH coefficients of the color, ``k >= (sh_degree + 1) ** 2``. [n, k, 3]
        features: per-Gaussian features blended like colors (no activation, no background). [n, f]
        viewmats: OpenCV world-to-camera matrices, 4x4 or 3x4. [c, 4, 4]
        Ks: pinhole intrinsics in pixels. [c, 3, 3]
        width, height: image size in pixels.
        sh_degree: SH degree to evaluate; color = max(SH(dir) + 0.5, 0) as in gsplat and 3DGS.
        near, far: Gaussians with camera z outside (near, far) are culled.
        backend: ``"gsplat"`` (CUDA), ``"torch"`` (anywhere), or ``"auto"``: gsplat for CUDA tensors.
        background: RGB composited behind the Gaussians, per camera [c, 3] or shared [3]; None = black.

    Returns:
        ``rgb`` [c, h, w, 3], ``depth`` [c, h, w, 1] (ED: alpha-normalized expected z-depth),
        ``alpha`` [c, h, w, 1], ``features`` [c, h, w, f] or None.
    """
    n = _check_gaussians(means, quats, scales, opacities, sh_coeffs, features, sh_degree)
    if viewmats.ndim != 3 or viewmats.shape[-1] != 4 or viewmats.shape[-2] not in (3, 4):
        raise ValueError(f"viewmats must have shape [c, 4, 4] or [c, 3, 4], got {tuple(viewmats.shape)}")
    c = viewmats.shape[0]
    if Ks.shape != (c, 3, 3):
        raise ValueError(f"Ks must have shape [{c}, 3, 3] (one per viewmat), got {tuple(Ks.shape)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width} x {height}")
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    if background is not None:
        if background.shape == (3,):
            background = background.expand(c, 3)
        elif background.shape != (c, 3):
            raise ValueError(f"background must have shape [3] or [{c}, 3], got {tuple(background.shape)}")
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend == "gsplat" and not means.is_cuda:
        raise ValueError('backend="gsplat" needs CUDA tensors; use backend="torch" (or "auto") on the CPU')
    if backend not in ("gsplat", "torch"):
        raise ValueError(f'backend must be "auto", "gsplat" or "torch", got {backend!r}')
    viewmats = to_4x4(viewmats)

    # SH colors per camera, one camera at a time so that no [c, n, k, 3] copy is made.
    centres = w2c_to_c2w(viewmats)[:, :3, 3]
    sh_fn = spherical_harmonics if backend == "gsplat" else _spherical_harmonics
    rgb = torch.stack([sh_fn(sh_degree, means - centre, sh_coeffs) for centre in centres])
    rgb = torch.clamp_min(rgb + 0.5, 0.0)  # [c, n, 3]
    num_features = 0 if features is None else features.shape[1]
    colors = rgb if features is None else torch.cat([rgb, features.expand(c, n, num_features)], dim=-1)
    if backend == "gsplat":
        image, alpha, _ = rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near, far_plane=far, eps2d=BLUR_2D, sh_degree=None, tile_size=TILE_SIZE,
            render_mode="RGB+ED",
        )  # fmt: skip
    else:
        image, alpha = _rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near, far)
    rgb = image[..., :3]
    if background is not None:
        # Composited here for both backends: gsplat 1.5.3's packed mode rejects per-camera backgrounds, and
        # behind everything the transmittance left is exactly 1 - alpha.
        rgb = rgb + background[:, None, None, :] * (1 - alpha)
    return {
        "rgb": rgb,
        "depth": image[..., -1:],
        "alpha": alpha,
        "features": None if features is None else image[..., 3 : 3 + num_features],
    }


def _check_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh_coeffs: Tensor,
    features: Optional[Tensor],
    sh_degree: int,
) -> int:
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape [n, 3], got {tuple(means.shape)}")
    n = means.shape[0]
    expected = {"quats": (quats, (n, 4)), "scales": (scales, (n, 3)), "opacities": (opacities, (n,))}
    for name, (value, shape) in expected.items():
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)} like means, got {tuple(value.shape)}")
    if sh_coeffs.ndim != 3 or sh_coeffs.shape[0] != n or sh_coeffs.shape[2] != 3:
        raise ValueError(f"sh_coeffs must have shape [{n}, k, 3], got {tuple(sh_coeffs.shape)}")
    if sh_degree < 0 or (sh_degree + 1) ** 2 > sh_coeffs.shape[1]:
        raise ValueError(
            f"sh_degree={sh_degree} needs (sh_degree + 1)^2 = {(sh_degree + 1) ** 2} coefficients, "
            f"sh_coeffs has {sh_coeffs.shape[1]}"
        )
    if features is not None and (features.ndim != 2 or features.shape[0] != n):
        raise ValueError(f"features must have shape [{n}, f], got {tuple(features.shape)}")
    return n


def _rasterize_torch(
    means: Tensor,  # [n, 3]
    quats: Tensor,  # [n, 4]
    scales: Tensor,  # [n, 3]
    opacities: Tensor,  # [n]
    colors: Tensor,  # [c, n, d]
    viewmats: Tensor,  # [c, 4, 4]
    Ks: Tensor,  # [c, 3, 3]
    width: int,
    height: int,
    near: float,
    far: float,
) -> tuple[Tensor, Tensor]:
    """gsplat's ``rasterization(..., render_mode="RGB+ED")`` in PyTorch: ``[c, h, w, d + 1]``, ``[c, h, w, 1]``.

    Per pixel and front to back in camera z (ties in Gaussian order), as gsplat's CUDA kernel does:
    ``alpha = min(0.999, o * exp(-sigma))`` with ``sigma`` the Mahalanobis half-distance under the
    2D covariance blurred by 0.3; Gaussians with ``alpha < 1/255`` are skipped; blending stops
    before the Gaussian that would bring the transmittance to ``<= 1e-4``. Gaussians are binned into
    16x16 tiles with gsplat's opacity-aware boxes, which contain every pixel where ``alpha >= 1/255``,
    so the binning changes only the cost, never the result.
    """
    c, n, d = colors.shape
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=BLUR_2D, near_plane=near, far_plane=far
    )  # [c, n, 2] each, depths [c, n], conics [c, n, 3]

    # Blend the z-depth as one more channel; normalized at the end ("ED").
    channels = torch.cat([colors, depths[..., None].to(colors.dtype)], dim=-1).reshape(c * n, d + 1)
    means2d_flat, conics_flat = means2d.reshape(c * n, 2), conics.reshape(c * n, 3)
    opacities_flat = opacities.expand(c, n).reshape(c * n)

    tile_w, tile_h = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    num_tiles = c * tile_h * tile_w
    flat_ids, tile_starts, tile_counts = _bin_tiles(
        means2d, radii, depths, conics, opacities, tile_w, tile_h
    )

    # Pixel centres of a tile, relative to its corner. [p, 2]
    rows, cols = torch.meshgrid(torch.arange(TILE_SIZE), torch.arange(TILE_SIZE), indexing="ij")
    local = torch.stack([cols, rows], dim=-1).reshape(-1, 2).to(means2d) + PIXEL_CENTER
    pixels = local.shape[0]

    # Chunks of tiles with similar Gaussian counts, so that padding to the chunk's maximum is cheap.
    busy = torch.nonzero(tile_counts > 0).squeeze(1)
    busy = busy[torch.argsort(tile_counts[busy], stable=True)]
    busy_counts = tile_counts[busy].tolist()
    outputs, tiles_done, start = [], [], 0
    while start < len(busy_counts):
        stop = start + 1
        while (
            stop < len(busy_counts)
            and (stop + 1 - start) * busy_counts[stop] * pixels <= _CHUNK_ELEMENTS
            and busy_counts[stop] <= _CHUNK_PADDING * busy_counts[start]
        ):
            stop += 1
        tiles = busy[start:stop]
        slots = torch.arange(busy_counts[stop - 1], device=means.device)
        valid = slots[None, :] < tile_counts[tiles][:, None]  # [t, k]
        position = (tile_starts[tiles][:, None] + slots[None, :]).clamp(max=flat_ids.shape[0] - 1)
        ids = flat_ids[position]  # [t, k] indices into the flattened [c * n]
        tile_xy = torch.stack([tiles % tile_w, (tiles // tile_w) % tile_h], dim=-1).to(local) * TILE_SIZE
        # Padding slots get opacity 0, hence alpha 0 < 1/255: skipped like any faint Gaussian.
        opacity = opacities_flat[ids] * valid
        outputs.append(_blend(means2d_flat[ids], conics_flat[ids], opacity, channels[ids], tile_xy[:, None] + local))
        tiles_done.append(tiles)
        start = stop

    blended = channels.new_zeros(num_tiles, pixels, d + 2)
    if outputs:
        blended = blended.index_copy(0, torch.cat(tiles_done), torch.cat(outputs))
    image = (
        blended.reshape(c, tile_h, tile_w, TILE_SIZE, TILE_SIZE, d + 2)
        .permute(0, 1, 3, 2, 4, 5)
        .reshape(c, tile_h * TILE_SIZE, tile_w * TILE_SIZE, d + 2)[:, :height, :width]
    )
    image, alpha = image[..., : d + 1], image[..., d + 1 :]
    depth = image[..., -1:] / alpha.clamp(min=1e-10)
    return torch.cat([image[..., :-1], depth], dim=-1), alpha


@torch.no_grad()
def _bin_tiles(
    means2d: Tensor,  # [c, n, 2]
    radii: Tensor,  # [c, n, 2]
    depths: Tensor,  # [c, n]
    conics: Tensor,  # [c, n, 3]
    opacities: Tensor,  # [n]
    tile_w: int,
    tile_h: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tile/Gaussian intersections sorted by (camera, tile, depth), as gsplat's ``isect_tiles``.

    Vectorized (gsplat's reference ``_isect_tiles`` loops in Python over every Gaussian and tile).
    Returns the flattened ``c * n`` Gaussian index of each intersection [m], and each tile's first
    intersection and intersection count [c * tile_h * tile_w].
    """
    c, n = depths.shape
    # Opacity-aware box (gsplat's projection kernel): the ellipse where o * exp(-sigma) >= 1/255.
    opacity = opacities.expand(c, n)
    extent = torch.sqrt(2 * torch.log(opacity.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
    extent = extent.clamp(max=MAX_EXTENT_SIGMAS)
    a, b, cc = conics.unbind(-1)
    det = (a * cc - b * b).clamp(min=1e-20)
    sigma_xy = torch.sqrt(torch.stack([cc / det, a / det], dim=-1))  # sqrt of the covariance diagonal
    box = torch.ceil(extent[..., None] * sigma_xy)
    visible = (radii > 0).all(dim=-1) & (opacity >= ALPHA_THRESHOLD) & (box > 0).all(dim=-1)

    lo = torch.floor((means2d - box) / TILE_SIZE)
    hi = torch.ceil((means2d + box) / TILE_SIZE)
    limit = means2d.new_tensor([tile_w, tile_h])
    lo = torch.minimum(lo.clamp(min=0), limit).long()
    hi = torch.minimum(hi.clamp(min=0), limit).long()
    span = (hi - lo).clamp(min=0)
    per_gaussian = torch.where(visible, span[..., 0] * span[..., 1], 0).reshape(-1)

    gaussian = torch.repeat_interleave(torch.arange(c * n, device=depths.device), per_gaussian)
    first = torch.cumsum(per_gaussian, 0) - per_gaussian
    k = torch.arange(gaussian.shape[0], device=depths.device) - first[gaussian]
    span_x = span.reshape(-1, 2)[gaussian, 0]
    tile_x = lo.reshape(-1, 2)[gaussian, 0] + k % span_x.clamp(min=1)
    tile_y = lo.reshape(-1, 2)[gaussian, 1] + k // span_x.clamp(min=1)
    tile = (gaussian // n) * (tile_h * tile_w) + tile_y * tile_w + tile_x

    # Sort by depth, then (stably) by tile: within a tile, front to back, ties in Gaussian order.
    order = torch.argsort(depths.reshape(-1)[gaussian], stable=True)
    order = order[torch.argsort(tile[order], stable=True)]
    counts = torch.bincount(tile, minlength=c * tile_h * tile_w)
    starts = torch.cumsum(counts, 0) - counts
    return gaussian[order], starts, counts


def _blend(
    means2d: Tensor,  # [t, k, 2]
    conics: Tensor,  # [t, k, 3]
    opacities: Tensor,  # [t, k], 0 for padding
    channels: Tensor,  # [t, k, d]
    pixels: Tensor,  # [t, p, 2]
) -> Tensor:
    """Front-to-back blending of ``k`` depth-sorted Gaussians over the ``p`` pixels of ``t`` tiles.

    Returns the blended channels with the alpha appended. [t, p, d + 1]
    """
    dx = pixels[:, None, :, 0] - means2d[..., 0, None]  # [t, k, p]
    dy = pixels[:, None, :, 1] - means2d[..., 1, None]
    a, b, c = (0.5 * conics[..., 0, None], conics[..., 1, None], 0.5 * conics[..., 2, None])
    # sigma = a dx^2 + 2 b' dx dy + c dy^2 with the halves folded in; >= 0 as the conic is positive definite.
    sigma = torch.addcmul(c * dy * dy, dx, torch.addcmul(b * dy, a, dx))
    alpha = torch.clamp_max(opacities[..., None] * torch.exp(-sigma), MAX_ALPHA)
    alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, 0.0)
    after = torch.cumprod(1 - alpha, dim=1)  # transmittance after each Gaussian
    before = torch.cat([torch.ones_like(after[:, :1]), after[:, :-1]], dim=1)
    # Transmittance only decreases, so "stop before reaching 1e-4" keeps a prefix of the Gaussians.
    weights = alpha * before * (after.detach() > MIN_TRANSMITTANCE)  # [t, k, p]
    blended = torch.einsum("tkp,tkd->tpd", weights, channels)
    return torch.cat([blended, weights.sum(dim=1)[..., None]], dim=-1)
