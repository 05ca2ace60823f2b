"""The Feature Gaussian decoder (paper Sec. 3.1): pixel-aligned Gaussians with colour and semantics.

A DPT over the (fused) geometry tokens gives per-pixel features; skip connections from the input image
and from the semantic encoder's per-pixel features ("concatenating both the appearance features and the
semantic features") restore high-frequency detail; a small convolutional head turns the concatenation
into raw Gaussian parameters. The low-dimensional semantic feature is rendered and then lifted to the
512-d LSeg space by ``semantic_proj`` (a 1x1 layer, as LSM and Uni3R do), which keeps rasterization cheap.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ff3r_ns.network.checkpointing import run_checkpointed
from ff3r_ns.network.dpt import DPTHead

SH_C0 = 0.28209479177387814
"""The zeroth SH basis function; colour = SH_C0 * dc + 0.5 as in 3DGS."""


class GaussianHead(nn.Module):
    """Per-pixel raw Gaussian parameters from tokens, images and semantic features.

    Args:
        dim_in: Channels of the geometry tokens (2 * embed_dim).
        patch_size: Patch size of the geometry encoder.
        features: Channels of the DPT fusion path.
        out_channels: DPT reassemble channels per level.
        intermediate_layer_idx: Encoder layers the DPT reads (the last one is the fused layer).
        sh_degree: Degree of the SH colour.
        semantic_dim: Channels of the rendered low-dimensional semantic feature.
        lseg_dim: Channels of the semantic encoder's per-pixel features (CLIP's 512).
        skip_dim: Channels of each skip branch.
        hidden_dim: Channels of the full-resolution 3x3 convolution before the output layer.
        min_scale, max_scale: Gaussian size range in pixel footprints (depth / focal).
    """

    def __init__(
        self,
        dim_in: int = 2048,
        patch_size: int = 14,
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        sh_degree: int = 1,
        semantic_dim: int = 32,
        lseg_dim: int = 512,
        skip_dim: int = 32,
        hidden_dim: int = 64,
        min_scale: float = 0.05,
        max_scale: float = 3.0,
    ) -> None:
        super().__init__()
        self.sh_degree = sh_degree
        self.semantic_dim = semantic_dim
        self.min_scale, self.max_scale = min_scale, max_scale
        self.dpt = DPTHead(
            dim_in=dim_in,
            patch_size=patch_size,
            features=features,
            out_channels=tuple(out_channels),
            intermediate_layer_idx=tuple(intermediate_layer_idx),
            feature_only=True,
        )
        self.rgb_skip = nn.Sequential(
            nn.Conv2d(3, skip_dim, 3, padding=1), nn.GELU(), nn.Conv2d(skip_dim, skip_dim, 3, padding=1)
        )
        self.semantic_skip = nn.Conv2d(lseg_dim, skip_dim, 1)
        # scale 3 | rotation 4 | opacity 1 | SH 3k | confidence 1 | semantic f
        self.split_sizes = (3, 4, 1, 3 * (sh_degree + 1) ** 2, 1, semantic_dim)
        # The only convolution at full resolution with many channels: kept narrow, it sets the head's cost.
        self.out = nn.Sequential(
            nn.Conv2d(features + 2 * skip_dim, hidden_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden_dim, sum(self.split_sizes), 1),
        )
        # Small last layer: at initialization every Gaussian is a pixel-sized, half-opaque splat of the
        # input pixel's colour (see `activate`), so early renders already resemble the images.
        nn.init.normal_(self.out[-1].weight, std=1e-3)
        nn.init.zeros_(self.out[-1].bias)
        self.semantic_proj = nn.Conv2d(semantic_dim, lseg_dim, 1)
        self.checkpointing = False
        """Recompute each chunk of views in the backward pass; only the chunk's raw parameters are kept."""

    def raw_parameters(
        self,
        tokens_list: list[Tensor],
        images: Float[Tensor, "b s 3 h w"],
        semantic_features: Float[Tensor, "b s c hs ws"],
        patch_start_idx: int,
        frames_chunk_size: int = 8,
    ) -> Float[Tensor, "b s h w d"]:
        """The output layer's channels per pixel (float32), frames processed in chunks so memory grows gently."""
        s = images.shape[1]
        step = frames_chunk_size or s
        chunks = [
            run_checkpointed(
                self.checkpointing, self._chunk, tokens_list, images, semantic_features, patch_start_idx, start,
                min(start + step, s),
            )  # fmt: skip
            for start in range(0, s, step)
        ]
        return torch.cat(chunks, dim=1).permute(0, 1, 3, 4, 2).float()

    def _chunk(self, tokens_list, images, semantic_features, patch_start_idx: int, start: int, end: int) -> Tensor:
        b, _, _, h, w = images.shape
        frames = slice(start, end)
        feats = self.dpt([t[:, frames] for t in tokens_list], images[:, frames], patch_start_idx, None)
        n = feats.shape[0] * feats.shape[1]
        rgb = images[:, frames].reshape(n, 3, h, w)
        # A 1x1 conv commutes with bilinear upsampling, so reduce channels before upsampling.
        sem = semantic_features[:, frames].reshape(n, *semantic_features.shape[2:]).to(feats.dtype)
        sem = self.semantic_skip(sem)
        sem = F.interpolate(sem, size=(h, w), mode="bilinear", align_corners=False)
        x = torch.cat([feats.reshape(n, -1, h, w), self.rgb_skip(rgb), sem.to(feats.dtype)], dim=1)
        return self.out(x).reshape(b, end - start, sum(self.split_sizes), h, w)

    def activate(
        self,
        raw: Float[Tensor, "b s h w d"],
        images: Float[Tensor, "b s 3 h w"],
        depth: Float[Tensor, "b s h w"],
        intrinsics: Float[Tensor, "b s 3 3"],
    ) -> dict[str, Tensor]:
        """Raw channels to Gaussian parameters.

        Returns a dict of [b, s, h, w, ...] tensors: ``log_scales`` (3), ``quats`` (4, wxyz),
        ``opacity_logits`` (scalar), ``sh`` (k, 3), ``confidence`` (scalar logit), ``semantic`` (f).
        """
        b, s, _, h, w = images.shape
        scale, rot, opacity, sh, conf, semantic = torch.split(raw, self.split_sizes, dim=-1)

        # Size in units of the pixel footprint (depth / focal), so that Gaussians tile the image at any depth.
        focal = torch.sqrt(intrinsics[..., 0, 0] * intrinsics[..., 1, 1])[..., None, None]
        footprint = depth.float().clamp(min=1e-6) / focal
        factor = self.min_scale + (self.max_scale - self.min_scale) * torch.sigmoid(scale)
        log_scales = torch.log(footprint[..., None] * factor)

        identity = rot.new_tensor([1.0, 0.0, 0.0, 0.0])
        sh = sh.reshape(b, s, h, w, -1, 3)
        # RGB skip into the colour itself: the DC term starts at the input pixel's colour.
        dc = (images.permute(0, 1, 3, 4, 2).float() - 0.5) / SH_C0
        sh = torch.cat([sh[..., :1, :] + dc[..., None, :], sh[..., 1:, :]], dim=-2)
        return {
            "log_scales": log_scales,
            "quats": rot + identity,
            "opacity_logits": opacity[..., 0],
            "sh": sh,
            "confidence": conf[..., 0],
            "semantic": semantic,
        }

    def lift_semantic(self, rendered: Float[Tensor, "n f h w"]) -> Float[Tensor, "n c h w"]:
        """Rendered low-dimensional semantic maps to the 512-d LSeg space (the 1x1 layer)."""
        return self.semantic_proj(rendered)

