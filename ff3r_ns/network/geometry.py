"""Geometry encoder (paper Sec. 3.1): VGGT's aggregator, a DINOv2 patch embedding followed by alternating
frame-wise and global attention over all views.

Parameter names and shapes equal those of VGGT's ``Aggregator`` (``vggt/models/aggregator.py``) and of the
DINOv2 ViT it wraps (``vggt/layers/vision_transformer.py``), so the ``aggregator.*`` entries of the VGGT-1B
checkpoint load with the prefix stripped and no renaming::

    encoder.load_state_dict({k.removeprefix("aggregator."): v for k, v in ckpt.items()
                             if k.startswith("aggregator.")}, strict=True)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from ff3r_ns.network.checkpointing import run_checkpointed
from ff3r_ns.network.transformer import Block, RopeTables, RotaryEmbedding2D

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class PatchProjection(nn.Module):
    """Non-overlapping patch convolution, flattened to tokens (DINOv2's ``PatchEmbed``, key ``proj``).

    Args:
        patch_size: Patch side in pixels.
        embed_dim: Token channels.
    """

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n p c"]:
        """Embeds each patch; tokens in row-major patch order."""
        return self.proj(images).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """DINOv2 ViT with register tokens, used as the patch embedding; returns its normalized patch tokens.

    Layout of VGGT's ``patch_embed`` (``dinov2_vitl14_reg`` at 518 px: 37x37 learned positions + 1 for the
    class token, 4 registers, LayerScale, LayerNorm eps 1e-6, no qk-norm). timm's DINOv2 differs in layout
    (class position folded into the class token, no mask token), hence this module.

    Args:
        img_size: Training resolution, fixing the learned position grid (img_size / patch_size)^2.
        patch_size: Patch side in pixels.
        embed_dim: Token channels.
        depth: Blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden channels over embed_dim.
        num_register_tokens: Register tokens inserted after the class token.
        init_values: LayerScale initial value.
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        init_values: float = 1.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.num_register_tokens = num_register_tokens
        self.patch_embed = PatchProjection(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        # DINOv2's masked-image-modelling token: never used here, kept so checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=1e-6) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.checkpointing = False
        """Recompute each block in the backward pass instead of keeping its activations."""
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def patch_positions(self, grid_h: int, grid_w: int) -> Float[Tensor, "1 p c"]:
        """Learned patch positions resized to a grid_h x grid_w grid, as DINOv2 does (bicubic, antialiased,
        in float32; no resize at the training grid)."""
        pos = self.pos_embed[:, 1:]
        if (grid_h, grid_w) == (self.grid, self.grid):
            return pos
        pos = pos.float().reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(grid_h, grid_w), mode="bicubic", antialias=True)
        return pos.flatten(2).transpose(1, 2).to(self.pos_embed.dtype)

    def forward(self, images: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n p c"]:
        """Normalized patch tokens of ImageNet-normalized images.

        Args:
            images: Images normalized with ImageNet mean/std; h, w multiples of patch_size.

        Returns:
            Final-LayerNorm patch tokens, p = (h / patch_size) * (w / patch_size), row-major.
        """
        n, _, h, w = images.shape
        patches = self.patch_embed(images) + self.patch_positions(h // self.patch_size, w // self.patch_size)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        x = torch.cat((cls.to(patches.dtype), self.register_tokens.expand(n, -1, -1).to(patches.dtype), patches), 1)
        for block in self.blocks:
            x = run_checkpointed(self.checkpointing, block, x)
        return self.norm(x[:, 1 + self.num_register_tokens :])


class GeometryEncoder(nn.Module):
    """VGGT aggregator: DINOv2 patch tokens plus per-frame camera and register tokens, refined by
    ``depth`` pairs of (frame attention, global attention) blocks.

    Frame blocks attend within each view, global blocks across all tokens of all views; both share 2D
    RoPE on the patch grid. The first view gets token set 0 of ``camera_token`` / ``register_token``, all
    other views set 1, which makes the first view the reference frame. The output of pair i is the
    channel concatenation of its frame block and global block outputs (2C channels).

    Args:
        img_size: Resolution the patch embedding's positions were learned at.
        patch_size: Patch side in pixels.
        embed_dim: Token channels C.
        depth: Frame/global block pairs.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden channels over C.
        num_register_tokens: Register tokens per frame (also DINOv2's register count).
        qk_norm: LayerNorm on q and k in the alternating blocks.
        rope_freq: RoPE base frequency; 0 or less disables RoPE.
        init_values: LayerScale initial value of the alternating blocks.
        patch_embed_depth: DINOv2 blocks (24 for ViT-L).
        patch_embed_num_heads: DINOv2 attention heads (16 for ViT-L).
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        qk_norm: bool = True,
        rope_freq: float = 100.0,
        init_values: float = 0.01,
        patch_embed_depth: int = 24,
        patch_embed_num_heads: int = 16,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.checkpointing = False
        """Recompute each frame/global block pair in the backward pass; only its input tokens are kept."""
        self.patch_embed = DinoV2(
            img_size, patch_size, embed_dim, patch_embed_depth, patch_embed_num_heads, mlp_ratio, num_register_tokens
        )
        self.rope = RotaryEmbedding2D(embed_dim // num_heads, rope_freq) if rope_freq > 0 else None
        self.frame_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, qk_norm=qk_norm) for _ in range(depth)
        )
        self.global_blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, qk_norm=qk_norm) for _ in range(depth)
        )
        # Index 0 along axis 1: the reference (first) view; index 1: every other view.
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, embed_dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, num_register_tokens, embed_dim) * 1e-6)
        self.patch_start_idx = 1 + num_register_tokens
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)

    def _special_tokens(self, b: int, s: int) -> Float[Tensor, "bs k c"]:
        tokens = torch.cat((self.camera_token, self.register_token), dim=2)  # [1, 2, k, C]
        per_view = torch.cat((tokens[:, :1], tokens[:, 1:].expand(-1, s - 1, -1, -1)), dim=1)
        return per_view.expand(b, -1, -1, -1).reshape(b * s, *tokens.shape[2:])

    def _pair(self, i: int, tokens: Tensor, rope: RopeTables | None) -> tuple[Tensor, Tensor]:
        """Block pair i: frame attention within each view, then global attention over all views."""
        b, s, p, c = tokens.shape
        frame_out = self.frame_blocks[i](tokens.view(b * s, p, c), rope).view(b, s, p, c)
        global_out = self.global_blocks[i](frame_out.view(b, s * p, c), rope).view(b, s, p, c)
        return frame_out, global_out

    def forward(
        self, images: Float[Tensor, "b s 3 h w"], keep_layers: Sequence[int]
    ) -> tuple[list[Float[Tensor, "b s p 2c"]], int]:
        """Encodes all views jointly.

        Only the requested layers are concatenated and kept, and no block after the deepest requested one
        runs. ``keep_layers`` are block-pair indices in [0, depth); DPT heads want their
        ``intermediate_layer_idx`` (4, 11, 17, 23), the camera head wants the last (depth - 1) in last place.

        Args:
            images: Views in [0, 1]; h and w multiples of patch_size.
            keep_layers: Indices of the block pairs whose outputs to return, in the order wanted.

        Returns:
            (tokens, patch_start_idx): tokens[i] is the output of pair keep_layers[i], with
            p = patch_start_idx + (h / patch_size) * (w / patch_size) tokens per view: the camera token,
            the register tokens, then the patch tokens in row-major order.
        """
        b, s, _, h, w = images.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}; resize or crop the images"
            )
        if not keep_layers or min(keep_layers) < 0 or max(keep_layers) >= self.depth:
            raise ValueError(f"keep_layers must be non-empty indices in [0, {self.depth}), got {list(keep_layers)}")
        grid_h, grid_w = h // self.patch_size, w // self.patch_size

        images = (images - self._mean) / self._std
        patches = self.patch_embed(images.reshape(b * s, 3, h, w))
        tokens = torch.cat((self._special_tokens(b, s).to(patches.dtype), patches), dim=1)
        tokens = tokens.view(b, s, *tokens.shape[1:])
        rope = None if self.rope is None else self.rope(grid_h, grid_w, self.patch_start_idx, images.device)

        kept: dict[int, Tensor] = {}
        for i in range(max(keep_layers) + 1):
            frame_out, tokens = run_checkpointed(self.checkpointing, self._pair, i, tokens, rope)
            if i in keep_layers:
                kept[i] = torch.cat((frame_out, tokens), dim=-1)
        return [kept[i] for i in keep_layers], self.patch_start_idx
