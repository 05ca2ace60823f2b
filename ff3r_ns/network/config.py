"""The FF3R network's hyperparameters and its three presets.

``large`` is the paper's network (VGGT-1B geometry transformer with its DINOv2 ViT-L/14 patch embedding,
LSeg ViT-L/16 semantic encoder); ``small`` trains on one GPU in minutes; ``tiny`` runs the CPU tests in
milliseconds. One code path serves all three. A config round-trips through JSON, which is how FF3R
checkpoints record the network they hold.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GeometryConfig:
    """The VGGT-style alternating-attention encoder (see ``GeometryEncoder``)."""

    img_size: int = 518
    """Resolution of the patch embedding's learned position grid (DINOv2: 518 = 37 patches)."""
    patch_size: int = 14
    """Patch side in pixels; input sizes must be multiples of it."""
    embed_dim: int = 1024
    """Token channels; the heads read 2x this (frame and global outputs concatenated)."""
    depth: int = 24
    """Frame/global block pairs."""
    num_heads: int = 16
    """Attention heads."""
    patch_embed_depth: int = 24
    """Blocks of the DINOv2 patch embedding."""
    patch_embed_num_heads: int = 16
    """Heads of the DINOv2 patch embedding."""
    intermediate_layer_idx: tuple[int, ...] = (4, 11, 17, 23)
    """Block pairs the DPT heads read; the last one is also the camera head's and the fused layer."""


@dataclass
class SemanticConfig:
    """The LSeg image encoder (see ``LSegImageEncoder``)."""

    image_size: int = 384
    """LSeg's training resolution (its learned position grid)."""
    patch_size: int = 16
    """ViT patch side in pixels; views are resized to a multiple of it for this encoder."""
    embed_dim: int = 1024
    """ViT channels (the semantic tokens' channels)."""
    depth: int = 24
    """ViT blocks."""
    num_heads: int = 16
    """ViT heads."""
    hooks: tuple[int, ...] = (5, 11, 17, 23)
    """ViT blocks feeding the DPT decoder."""
    reassemble_dims: tuple[int, ...] = (256, 512, 1024, 1024)
    """Channels of the four reassembled maps."""
    features: int = 256
    """Channels of the decoder's fusion path."""
    out_dim: int = 512
    """Per-pixel feature channels (CLIP ViT-B/32's text space)."""


@dataclass
class HeadsConfig:
    """Depth, camera and Gaussian heads."""

    dpt_features: int = 256
    """Channels of the DPT fusion paths (depth and Gaussian heads)."""
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    """DPT reassemble channels per level."""
    camera_trunk_depth: int = 4
    """Transformer blocks of the camera head's trunk."""
    camera_num_heads: int = 16
    """Attention heads of the camera head."""
    camera_iterations: int = 4
    """Iterative refinement steps of the camera head."""
    sh_degree: int = 1
    """Degree of the Gaussians' SH colour."""
    semantic_dim: int = 32
    """Channels of the per-Gaussian semantic feature (lifted to 512-d after rendering)."""
    skip_dim: int = 32
    """Channels of each of the Gaussian head's skip branches (RGB and semantic)."""
    gaussian_hidden_dim: int = 64
    """Channels of the Gaussian head's full-resolution 3x3 convolution."""
    frames_chunk_size: int = 8
    """Views per chunk in the DPT heads: bounds activation memory at many views."""


@dataclass
class FusionConfig:
    """Token-wise fusion (Eq. 1)."""

    enabled: bool = True
    """Off for the paper's Table 3 "Base" ablation: the heads read the geometry tokens as they are."""
    num_heads: int = 16
    """Cross-attention heads."""


@dataclass
class VoxelConfig:
    """Semantic-aware voxelization (Eq. 5-8)."""

    enabled: bool = True
    """Merge pixel-aligned Gaussians into voxels; off keeps one Gaussian per pixel (as LSM)."""
    voxel_size: float = 0.002
    """Voxel edge, in the units of the prediction (VGGT normalizes scenes to unit mean depth)."""
    lam: float = 1.0
    """Weight lambda of the semantic distance in Eq. 7; 0 gives AnySplat's confidence-only merging."""


@dataclass
class FF3RConfig:
    """The whole network."""

    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    voxel: VoxelConfig = field(default_factory=VoxelConfig)
    image_size: int = 448
    """Square size the views are cropped and resized to (448 in the paper)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "FF3RConfig":
        known = {f.name: f for f in dataclasses.fields(FF3RConfig)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown FF3R config keys {sorted(unknown)}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            sub = SUBCONFIGS.get(name)
            if sub is None:
                kwargs[name] = value
                continue
            sub_fields = {f.name for f in dataclasses.fields(sub)}
            bad = set(value) - sub_fields
            if bad:
                raise ValueError(f"unknown keys {sorted(bad)} in FF3R config section '{name}'")
            kwargs[name] = sub(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        return FF3RConfig(**kwargs)


SUBCONFIGS = {
    "geometry": GeometryConfig,
    "semantic": SemanticConfig,
    "heads": HeadsConfig,
    "fusion": FusionConfig,
    "voxel": VoxelConfig,
}


def preset(name: str) -> FF3RConfig:
    """The ``tiny``, ``small`` or ``large`` network."""
    if name == "large":
        return FF3RConfig()
    if name == "small":
        # Sized so that an fp16 checkpoint ships in the repository (< 30 MB) and trains in minutes.
        return FF3RConfig(
            geometry=GeometryConfig(
                embed_dim=192, depth=5, num_heads=3, patch_embed_depth=3, patch_embed_num_heads=3,
                intermediate_layer_idx=(1, 2, 3, 4),
            ),
            semantic=SemanticConfig(
                embed_dim=192, depth=4, num_heads=3, hooks=(0, 1, 2, 3), reassemble_dims=(24, 48, 96, 192),
                features=32,
            ),
            heads=HeadsConfig(
                dpt_features=64, dpt_out_channels=(32, 64, 128, 192), camera_trunk_depth=1, camera_num_heads=3,
                sh_degree=1, semantic_dim=16, skip_dim=16, gaussian_hidden_dim=32, frames_chunk_size=16,
            ),
            fusion=FusionConfig(num_heads=3),
            voxel=VoxelConfig(voxel_size=0.01),
            image_size=224,
        )
    if name == "tiny":
        return FF3RConfig(
            geometry=GeometryConfig(
                img_size=56, embed_dim=32, depth=4, num_heads=2, patch_embed_depth=2, patch_embed_num_heads=2,
                intermediate_layer_idx=(0, 1, 2, 3),
            ),
            semantic=SemanticConfig(
                image_size=64, embed_dim=32, depth=4, num_heads=2, hooks=(0, 1, 2, 3), reassemble_dims=(8, 16, 32, 32),
                features=16,
            ),
            heads=HeadsConfig(
                dpt_features=16, dpt_out_channels=(8, 16, 32, 32), camera_trunk_depth=1, camera_num_heads=2,
                camera_iterations=2, sh_degree=0, semantic_dim=8, skip_dim=8, gaussian_hidden_dim=16, frames_chunk_size=4,
            ),
            fusion=FusionConfig(num_heads=2),
            voxel=VoxelConfig(voxel_size=0.02),
            image_size=56,
        )
    raise ValueError(f"unknown preset '{name}'; choose tiny, small or large")
