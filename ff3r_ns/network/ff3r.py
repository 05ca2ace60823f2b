"""The whole FF3R network (paper Fig. 2): unposed views in, cameras, depth and semantic Gaussians out.

    images ──► GeometryEncoder (DINOv2 + alternating attention) ──► geometry tokens x_v
          └──► LSegImageEncoder ──► semantic tokens s_v, per-pixel LSeg features
    x_v^(-1), s_v ──► TokenWiseFusion (Eq. 1) ──► x'_v (replaces the last layer)
    camera head ──► pose encodings ──► extrinsics, intrinsics
    depth head ──► depth, confidence ──► unprojected Gaussian centres
    Gaussian head (DPT + RGB and semantic skips) ──► pixel-aligned Gaussians
    semantic-aware voxelization (Eq. 5-8) ──► one Gaussian per voxel
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ff3r_ns.network.camera_head import CameraHead
from ff3r_ns.network.cameras import decode_pose, unproject_depth
from ff3r_ns.network.checkpointing import NETWORK_PARTS, checkpoint_parts, run_checkpointed
from ff3r_ns.network.config import FF3RConfig, preset
from ff3r_ns.network.dpt import DPTHead
from ff3r_ns.network.fusion import TokenWiseFusion
from ff3r_ns.network.gaussian_head import GaussianHead
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.geometry import GeometryEncoder
from ff3r_ns.network.precision import backbone_autocast, full_precision, parameter_dtype
from ff3r_ns.network.semantic import LSegImageEncoder
from ff3r_ns.network.voxelize import semantic_aware_voxelize

SEMANTIC_CHUNK = 32
"""Views the LSeg encoder takes at once outside training (the result is the same for any chunk size)."""

MIN_FOV, MAX_FOV = 1e-2, 3.1
"""Field-of-view range (radians) the decoded cameras are kept in."""


@dataclass
class FF3ROutput:
    """Everything one forward pass predicts for a batch of b scenes of s views each."""

    pose_enc_list: list[Float[Tensor, "b s 9"]]
    """Pose encodings of every refinement iteration of the camera head (last = final)."""
    extrinsics: Float[Tensor, "b s 3 4"]
    """OpenCV world-to-camera of each view; the world is the first view's camera frame."""
    intrinsics: Float[Tensor, "b s 3 3"]
    """Pinhole intrinsics in pixels of the input views (principal point at the centre)."""
    depth: Float[Tensor, "b s h w"]
    """Z-depth per pixel."""
    depth_conf: Float[Tensor, "b s h w"]
    """Depth confidence (1 + exp, >= 1)."""
    semantic_2d: Float[Tensor, "b s c hs ws"]
    """The semantic encoder's per-pixel features (LSeg's output; the 2D teacher of L_feat)."""
    gaussians: Gaussians
    """The scene's Gaussians: voxelized when voxelization is on, else one per pixel."""
    num_pixel_gaussians: int
    """Pixel-aligned Gaussians before voxelization (b * s * h * w)."""
    pixel_gaussians: Optional[Gaussians] = None
    """The pixel-aligned Gaussians, when asked for (training and diagnostics)."""


def geometry_modules(config: FF3RConfig) -> tuple[GeometryEncoder, CameraHead, DPTHead]:
    """VGGT's three parts at the config's sizes: aggregator, camera head, depth head (shared with the VGGT teacher)."""
    g, h = config.geometry, config.heads
    dim = 2 * g.embed_dim
    aggregator = GeometryEncoder(
        img_size=g.img_size,
        patch_size=g.patch_size,
        embed_dim=g.embed_dim,
        depth=g.depth,
        num_heads=g.num_heads,
        patch_embed_depth=g.patch_embed_depth,
        patch_embed_num_heads=g.patch_embed_num_heads,
    )
    camera_head = CameraHead(dim_in=dim, trunk_depth=h.camera_trunk_depth, num_heads=h.camera_num_heads)
    depth_head = DPTHead(
        dim_in=dim,
        patch_size=g.patch_size,
        output_dim=2,
        activation="exp",
        conf_activation="expp1",
        features=h.dpt_features,
        out_channels=h.dpt_out_channels,
        intermediate_layer_idx=g.intermediate_layer_idx,
    )
    return aggregator, camera_head, depth_head


def decode_cameras(
    pose_enc: Float[Tensor, "b s 9"], image_hw: tuple[int, int]
) -> tuple[Float[Tensor, "b s 3 4"], Float[Tensor, "b s 3 3"]]:
    """OpenCV world-to-camera extrinsics and intrinsics of the camera head's pose encoding, in float32."""
    pose_enc = pose_enc.float()
    # The fov leaves the camera head through a ReLU; an untrained head can output 0 (infinite focal).
    pose_enc = torch.cat([pose_enc[..., :7], pose_enc[..., 7:].clamp(MIN_FOV, MAX_FOV)], dim=-1)
    return decode_pose(pose_enc, image_hw)


class FF3R(nn.Module):
    """FF3R: VGGT-compatible geometry, LSeg semantics, token-wise fusion, heads and voxelization.

    Parameter names of ``aggregator``, ``camera_head`` and ``depth_head`` are VGGT-1B's, and those of
    ``semantic_encoder`` are LSeg's modulo a fixed key map, so released weights load (``weights.py``).
    """

    def __init__(self, config: FF3RConfig) -> None:
        super().__init__()
        self.config = config
        g, sem, h = config.geometry, config.semantic, config.heads
        dim = 2 * g.embed_dim
        self.aggregator, self.camera_head, self.depth_head = geometry_modules(config)
        # SemanticConfig's fields are LSegImageEncoder's arguments.
        self.semantic_encoder = LSegImageEncoder(**dataclasses.asdict(sem))
        self.fusion = (
            TokenWiseFusion(geometry_dim=dim, semantic_dim=sem.embed_dim, num_heads=config.fusion.num_heads)
            if config.fusion.enabled
            else None
        )
        self.gaussian_head = GaussianHead(
            dim_in=dim,
            patch_size=g.patch_size,
            features=h.dpt_features,
            out_channels=h.dpt_out_channels,
            intermediate_layer_idx=g.intermediate_layer_idx,
            sh_degree=h.sh_degree,
            semantic_dim=h.semantic_dim,
            lseg_dim=sem.out_dim,
            skip_dim=h.skip_dim,
            hidden_dim=h.gaussian_hidden_dim,
        )
        self.checkpointed: frozenset[str] = frozenset()
        """Parts recomputed in the backward pass (`set_activation_checkpointing`)."""
        self.backbone_dtype: Optional[torch.dtype] = None
        """Autocast dtype of the backbone (``precision.py``; None: the caller's autocast, if any)."""

    def set_activation_checkpointing(self, parts: Union[bool, Iterable[str]] = True) -> "FF3R":
        """Recompute these parts (``checkpointing.NETWORK_PARTS``; True: all) in the backward pass instead of
        keeping their activations. The forward pass and the gradients are unchanged; inference is unaffected."""
        self.checkpointed = checkpoint_parts(parts, NETWORK_PARTS)
        self.aggregator.patch_embed.checkpointing = "patch_embed" in self.checkpointed
        self.aggregator.checkpointing = "encoder" in self.checkpointed
        self.semantic_encoder.checkpointing = "semantic" in self.checkpointed
        self.depth_head.checkpointing = self.gaussian_head.checkpointing = "heads" in self.checkpointed
        return self

    @classmethod
    def from_preset(cls, name: str) -> "FF3R":
        return cls(preset(name))

    def encode_semantics(
        self, images: Float[Tensor, "n 3 h w"]
    ) -> tuple[Float[Tensor, "n q c"], Float[Tensor, "n d hs ws"], tuple[int, int]]:
        """LSeg tokens and per-pixel features; views are resized to a multiple of its patch size."""
        p = self.config.semantic.patch_size
        h, w = images.shape[-2:]
        grid = (max(1, round(h / p)), max(1, round(w / p)))
        if (grid[0] * p, grid[1] * p) != (h, w):
            images = F.interpolate(images, size=(grid[0] * p, grid[1] * p), mode="bilinear", align_corners=False)
        # A frozen encoder (LSeg's weights) keeps no activations: nothing upstream of it trains.
        trains = any(p.requires_grad for p in self.semantic_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trains):
            if self.semantic_encoder.training or len(images) <= SEMANTIC_CHUNK:
                tokens, features = self.semantic_encoder(images)
            else:
                # Views are independent in eval mode (BatchNorm uses its running statistics), and a chunk keeps
                # the refinement's upsampled maps under INT_MAX elements (256 views of 448: 3.3e9 at once).
                parts = [self.semantic_encoder(chunk) for chunk in images.split(SEMANTIC_CHUNK)]
                tokens, features = torch.cat([t for t, _ in parts]), torch.cat([f for _, f in parts])
        return tokens, features, grid

    def forward(
        self, images: Float[Tensor, "b s 3 h w"], voxelize: Optional[bool] = None, keep_pixel_gaussians: bool = False
    ) -> FF3ROutput:
        """One feed-forward reconstruction.

        Args:
            images: RGB in [0, 1]; h and w multiples of the geometry patch size (14).
            voxelize: Override the config's voxelization switch.
            keep_pixel_gaussians: Also return the pixel-aligned Gaussians.
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must have shape [b, s, 3, h, w], got {tuple(images.shape)}")
        b, s, _, h, w = images.shape
        if s < 2:
            raise ValueError(f"FF3R needs at least 2 views per scene, got {s}")
        p = self.config.geometry.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} must be a multiple of the patch size {p}; resize the views")
        layers = self.config.geometry.intermediate_layer_idx

        with backbone_autocast(images.device, self.backbone_dtype):
            tokens_list, patch_start = self.aggregator(images, keep_layers=layers)
            sem_tokens, sem_features, sem_grid = self.encode_semantics(images.flatten(0, 1))
            sem_features = sem_features.reshape(b, s, *sem_features.shape[1:])
            if self.fusion is not None:
                # Eq. 1 on the last layer only, which every head reads (the camera head reads nothing else).
                fused = run_checkpointed(
                    "fusion" in self.checkpointed, self.fusion, tokens_list[-1],
                    sem_tokens.reshape(b, s, *sem_tokens.shape[1:]), patch_start, (h // p, w // p), sem_grid,
                )  # fmt: skip
                tokens_list = [*tokens_list[:-1], fused]

        # Heads, unprojection and voxelization with autocast off, as VGGT runs its heads (precision.py).
        with full_precision(images.device):
            dtype = parameter_dtype(self.depth_head)
            tokens_list = [t.to(dtype) for t in tokens_list]
            images = images.to(dtype)  # LSeg's features stay in their dtype: the Gaussian head casts each chunk
            chunk = self.config.heads.frames_chunk_size
            pose_enc_list = self.camera_head(tokens_list, num_iterations=self.config.heads.camera_iterations)
            depth, depth_conf = self.depth_head(tokens_list, images, patch_start, frames_chunk_size=chunk)
            depth = depth[..., 0].float()
            extrinsics, intrinsics = decode_cameras(pose_enc_list[-1], (h, w))
            raw = self.gaussian_head.raw_parameters(tokens_list, images, sem_features, patch_start, chunk)
            do_voxelize = self.config.voxel.enabled if voxelize is None else voxelize
            pixel, gaussians = run_checkpointed(
                "gaussians" in self.checkpointed, self._gaussians, raw, images, depth, extrinsics, intrinsics, do_voxelize
            )
        return FF3ROutput(
            pose_enc_list=pose_enc_list,
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            depth=depth,
            depth_conf=depth_conf.float(),
            semantic_2d=sem_features,
            gaussians=gaussians,
            num_pixel_gaussians=len(pixel),
            pixel_gaussians=pixel if keep_pixel_gaussians else None,
        )

    def _gaussians(
        self,
        raw: Float[Tensor, "b s h w d"],
        images: Float[Tensor, "b s 3 h w"],
        depth: Float[Tensor, "b s h w"],
        extrinsics: Float[Tensor, "b s 3 4"],
        intrinsics: Float[Tensor, "b s 3 3"],
        voxelize: bool,
    ) -> tuple[Gaussians, Gaussians]:
        """Pixel-aligned Gaussians (the depth unprojected with the predicted cameras) and what the scene keeps:
        their semantic-aware voxelization, or themselves."""
        b, s, _, h, w = images.shape
        params = self.gaussian_head.activate(raw, images, depth, intrinsics)
        pixel = Gaussians(
            means=unproject_depth(depth, extrinsics, intrinsics).reshape(-1, 3),
            log_scales=params["log_scales"].reshape(-1, 3),
            quats=params["quats"].reshape(-1, 4),
            opacity_logits=params["opacity_logits"].reshape(-1),
            sh=params["sh"].reshape(-1, *params["sh"].shape[-2:]),
            semantic=params["semantic"].reshape(-1, params["semantic"].shape[-1]),
            batch_index=torch.arange(b, device=images.device).repeat_interleave(s * h * w),
        )
        return pixel, self._voxelize(pixel, params["confidence"].reshape(-1)) if voxelize else pixel

    def _voxelize(self, pixel: Gaussians, confidence: Float[Tensor, "n"]) -> Gaussians:
        """Semantic-aware voxelization (Eq. 5-8) of the pixel-aligned Gaussians, in float32."""
        merged = semantic_aware_voxelize(
            means=pixel.means,
            confidence=confidence,
            semantic=pixel.semantic,
            attributes=pixel.attribute_matrix(),
            voxel_size=self.config.voxel.voxel_size,
            lam=self.config.voxel.lam,
            batch_index=pixel.batch_index,
        )
        return Gaussians.from_attribute_matrix(merged.means, merged.attributes, merged.semantic, merged.batch_index)
