"""Semantic-aware voxelization (FF3R Sec. 3.2, Eq. 5-8).

Pixel-aligned Gaussians are clustered into voxels of size ``eps``; inside each voxel they are merged
by a softmax over ``confidence - lam * semantic distance to the voxel's mean feature``, so that a
confident but semantically inconsistent outlier no longer dominates the merged Gaussian (Fig. 4).
``lam = 0`` is AnySplat's confidence-only voxelization.

Everything is scatter arithmetic over a flat voxel index (no loop over voxels), differentiable with
respect to every input except the discrete voxel assignment.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


class VoxelizeOutput(NamedTuple):
    """One merged Gaussian per occupied voxel, voxels ordered by (batch, x, y, z)."""

    means: Float[Tensor, "m 3"]
    """Weighted mean of the member centres (Eq. 8 with ``a = mu``)."""
    attributes: Float[Tensor, "m d"]
    """Weighted mean of the members' raw (pre-activation) attributes."""
    semantic: Float[Tensor, "m f"]
    """Weighted mean of the members' semantic features."""
    voxel_index: Int[Tensor, " n"]
    """Voxel of each input Gaussian, in ``[0, m)``."""
    weights: Float[Tensor, " n"]
    """Fusion weight ``w_{g->s}`` of each input Gaussian (Eq. 7); they sum to 1 within a voxel."""
    batch_index: Int[Tensor, " m"]
    """Batch element of each voxel (all zeros when no ``batch_index`` was given)."""


_CHUNK = 1 << 22
"""Gaussians per chunk of the row-wise steps (4 M: 0.5 GiB of 32-d float32 temporaries)."""


def _chunks(n: int) -> list[slice]:
    return [slice(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]


def _voxel_keys(means: Tensor, voxel_size: float, batch_index: Tensor) -> Tensor:
    """One int64 key per Gaussian, equal for Gaussians in the same (batch, voxel)."""
    # Eq. 5: V = round(mu / eps); grid coordinates shifted to start at 0 so they pack into one int64.
    grid = torch.round(means.detach() / voxel_size).to(torch.int64)
    grid = grid - grid.min(dim=0).values
    columns = torch.cat([batch_index[:, None].to(torch.int64), grid], dim=1)  # [n, 4]
    extents = columns.max(dim=0).values + 1
    if float(torch.prod(extents.double())) >= 2.0**62:
        raise ValueError(
            f"voxel grid of {extents[1:].tolist()} cells (x {int(extents[0])} batch elements) does not fit "
            f"an int64 key; voxel_size={voxel_size} is too small for the extent of the means"
        )
    key = columns[:, 0]
    for axis in range(1, 4):
        key = key * extents[axis] + columns[:, axis]
    return key


def semantic_aware_voxelize(
    means: Float[Tensor, "n 3"],
    confidence: Float[Tensor, " n"],
    semantic: Float[Tensor, "n f"],
    attributes: Float[Tensor, "n d"],
    voxel_size: float,
    lam: float,
    batch_index: Optional[Int[Tensor, " n"]] = None,
) -> VoxelizeOutput:
    """Merge Gaussians that fall in the same voxel, weighted by confidence and semantic consistency.

    Args:
        means: Gaussian centres in world units. [n, 3]
        confidence: per-Gaussian confidence ``C_g`` (any real number; it enters a softmax). [n]
        semantic: per-Gaussian semantic features ``f_sem``. [n, f]
        attributes: any other per-Gaussian attributes, raw (pre-activation) as AnySplat merges them:
            e.g. log-scales, quaternions, opacity logits, SH. [n, d]
        voxel_size: edge length ``eps`` of the cubic voxels, in the units of ``means``.
        lam: weight ``lambda`` of the semantic distance; 0 gives confidence-only merging.
        batch_index: batch element of each Gaussian; Gaussians of different elements never merge. [n]

    Returns:
        :class:`VoxelizeOutput` with ``m`` merged Gaussians.

    Eq. 6: the prototype of voxel ``s`` is the mean feature of its members and
    ``d_sem_g = 1 - cos(f_g, prototype_s)``. Eq. 7: ``w_{g->s} = softmax_{g in s}(C_g - lam d_sem_g)``.
    Eq. 8: every attribute is merged as ``sum_{g in s} w_{g->s} a_g``.
    """
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape [n, 3], got {tuple(means.shape)}")
    n = means.shape[0]
    if n == 0:
        raise ValueError("semantic_aware_voxelize needs at least one Gaussian, got 0")
    if confidence.shape != (n,):
        raise ValueError(f"confidence must have shape [{n}] like means, got {tuple(confidence.shape)}")
    if semantic.ndim != 2 or semantic.shape[0] != n:
        raise ValueError(f"semantic must have shape [{n}, f], got {tuple(semantic.shape)}")
    if attributes.ndim != 2 or attributes.shape[0] != n:
        raise ValueError(f"attributes must have shape [{n}, d], got {tuple(attributes.shape)}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    if not torch.isfinite(means).all():
        raise ValueError("means contain NaN or inf; voxel indices would be undefined")
    if batch_index is None:
        batch_index = torch.zeros(n, dtype=torch.int64, device=means.device)
    elif batch_index.shape != (n,) or batch_index.is_floating_point() or (batch_index < 0).any():
        raise ValueError(
            f"batch_index must be [{n}] non-negative integers, got {batch_index.dtype} {tuple(batch_index.shape)}"
        )

    # Eq. 5: one voxel per distinct (batch, round(mu / eps)); unique sorts keys batch-major.
    keys, voxel_index = torch.unique(_voxel_keys(means, voxel_size, batch_index), return_inverse=True)
    m = keys.shape[0]
    counts = torch.bincount(voxel_index, minlength=m).to(semantic.dtype)

    # Eq. 6: prototype = mean member feature; semantic distance = cosine distance to it.
    prototype = semantic.new_zeros(m, semantic.shape[1]).index_add_(0, voxel_index, semantic) / counts[:, None]
    # Row-wise, so computed in chunks: the gathered prototypes of all n Gaussians never exist at once.
    d_sem = torch.cat([
        1 - F.cosine_similarity(semantic[rows], prototype[voxel_index[rows]], dim=-1) for rows in _chunks(n)
    ])  # fmt: skip

    # Eq. 7: softmax within each voxel; the per-voxel max is subtracted so exp never overflows.
    logits = confidence - lam * d_sem
    voxel_max = logits.new_full((m,), float("-inf")).scatter_reduce(
        0, voxel_index, logits.detach(), reduce="amax", include_self=True
    )
    exp = torch.exp(logits - voxel_max[voxel_index])
    denom = exp.new_zeros(m).index_add_(0, voxel_index, exp)
    weights = exp / denom[voxel_index]

    # Eq. 8: weighted average of every attribute.
    def merge(values: Tensor) -> Tensor:
        merged = values.new_zeros(m, values.shape[1])
        for rows in _chunks(n):  # chunked like d_sem: no [n, d] temporary
            merged = merged.index_add(0, voxel_index[rows], weights[rows, None].to(values.dtype) * values[rows])
        return merged

    batch_of_voxel = torch.zeros(m, dtype=batch_index.dtype, device=means.device)
    batch_of_voxel[voxel_index] = batch_index
    return VoxelizeOutput(
        means=merge(means),
        attributes=merge(attributes),
        semantic=merge(semantic),
        voxel_index=voxel_index,
        weights=weights,
        batch_index=batch_of_voxel,
    )
