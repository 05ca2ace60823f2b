"""Transformer building blocks in VGGT's parameter layout: 2D RoPE, attention, MLP, LayerScale, Block.

Attribute names follow VGGT (`vggt/layers/{block,attention,mlp,layer_scale}.py`), which follow DINOv2, so
the released VGGT-1B and DINOv2 weights load without renaming: ``norm1``, ``attn.qkv``, ``attn.q_norm``,
``attn.k_norm``, ``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

RopeTables = tuple[Tensor, Tensor]
"""(cos, signed sin), each [P, head_dim]: rotation of one frame's P tokens, made by `RotaryEmbedding2D`."""


class RotaryEmbedding2D(nn.Module):
    """2D rotary position embedding as in VGGT: half the head channels rotate with the patch row, half
    with the patch column.

    Each half of ``head_dim`` channels is split again in two quarters rotated against each other
    (rotate-half convention) with inverse frequencies ``frequency ** (-2k / (head_dim / 2))``. Special tokens
    (camera, registers) sit at position (0, 0), i.e. are not rotated; patch (i, j) sits at (i + 1, j + 1).
    Tables depend only on the patch grid, so they are built once per grid and device and shared by all
    frames and all blocks.

    Args:
        head_dim: Channels per attention head; must be divisible by 4.
        frequency: Base frequency of the rotation (100 in VGGT).
    """

    def __init__(self, head_dim: int, frequency: float = 100.0) -> None:
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.frequency = frequency
        self._cache: dict[tuple, RopeTables] = {}

    def forward(self, grid_h: int, grid_w: int, num_special: int, device: torch.device) -> RopeTables:
        """Cos and signed-sin tables for one frame of ``num_special + grid_h * grid_w`` tokens.

        Args:
            grid_h: Patch rows.
            grid_w: Patch columns.
            num_special: Tokens before the patches (all at position 0).
            device: Device of the tables.

        Returns:
            (cos, sin), each float32 [num_special + grid_h * grid_w, head_dim], for `apply_rope`.
        """
        key = (grid_h, grid_w, num_special, str(device))
        if key not in self._cache:
            # Normal tensors even when first called under inference_mode, so training can reuse them.
            with torch.inference_mode(False):
                self._cache[key] = self._build(grid_h, grid_w, num_special, device)
        return self._cache[key]

    def _build(self, grid_h: int, grid_w: int, num_special: int, device: torch.device) -> RopeTables:
        half = self.head_dim // 2
        inv_freq = self.frequency ** (-torch.arange(0, half, 2, device=device, dtype=torch.float32) / half)
        rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w) + 1
        cols = torch.arange(grid_w, device=device).repeat(grid_h) + 1
        zeros = torch.zeros(num_special, device=device, dtype=rows.dtype)
        pos = torch.stack((torch.cat((zeros, rows)), torch.cat((zeros, cols))), dim=-1).float()  # [P, 2]
        angles = pos[:, :, None] * inv_freq  # [P, 2 (row, col), head_dim / 4]
        cos = angles.cos().repeat(1, 1, 2).flatten(1)
        sin = angles.sin()
        # apply_rope multiplies quarter-swapped features, so the minus of rotate-half lives in the table.
        sin = torch.stack((-sin, sin), dim=2).flatten(1)
        return cos, sin


def apply_rope(x: Float[Tensor, "b h n d"], rope: RopeTables) -> Float[Tensor, "b h n d"]:
    """Rotates queries or keys whose sequence is whole frames of P tokens (P = rows of the tables).

    Args:
        x: Per-head features; n is a multiple of P (one frame, or several frames laid end to end).
        rope: Tables from `RotaryEmbedding2D`.

    Returns:
        The rotated features, same shape and dtype.
    """
    cos, sin = (t.to(x.dtype) for t in rope)
    b, h, n, d = x.shape
    frames = x.view(b, h, n // cos.shape[0], cos.shape[0], d)
    swapped = frames.unflatten(-1, (2, 2, d // 4)).flip(-2).flatten(-3)
    return (frames * cos + swapped * sin).view(b, h, n, d)


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head LayerNorm on q and k and optional 2D RoPE.

    Uses the fused ``scaled_dot_product_attention``; under autocast q and k are cast to v's dtype so the
    flash kernel is eligible even though LayerNorm runs in float32.

    Args:
        dim: Token channels.
        num_heads: Attention heads.
        qk_norm: LayerNorm over the head channels of q and k (VGGT's aggregator uses it; DINOv2 does not).
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Float[Tensor, "b n c"], rope: Optional[RopeTables] = None) -> Float[Tensor, "b n c"]:
        """Attends over the n tokens of each batch row.

        Args:
            x: Tokens.
            rope: RoPE tables for frames of P tokens (n a multiple of P), or None for no positions.

        Returns:
            Attended tokens.
        """
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        x = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Two-layer perceptron with GELU.

    Args:
        in_features: Input channels.
        hidden_features: Hidden channels (default: in_features).
        out_features: Output channels (default: in_features).
    """

    def __init__(
        self, in_features: int, hidden_features: Optional[int] = None, out_features: Optional[int] = None
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Float[Tensor, "... c"]) -> Float[Tensor, "... c_out"]:
        """Applies fc1, GELU, fc2 on the last axis."""
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Learned per-channel scale of a residual branch (CaiT), stored as ``gamma``.

    Args:
        dim: Channels.
        init_values: Initial value of every scale.
    """

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Float[Tensor, "... c"]) -> Float[Tensor, "... c"]:
        """Scales the last axis."""
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))).

    Args:
        dim: Token channels.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden channels over dim.
        init_values: LayerScale initial value; None or 0 for no LayerScale.
        qk_norm: LayerNorm on q and k per head.
        norm_eps: Epsilon of norm1 and norm2 (1e-5 in VGGT's own blocks, 1e-6 in DINOv2).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        init_values: Optional[float] = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Float[Tensor, "b n c"], rope: Optional[RopeTables] = None) -> Float[Tensor, "b n c"]:
        """Runs the block.

        Args:
            x: Tokens.
            rope: RoPE tables (see `Attention.forward`), or None.

        Returns:
            Updated tokens.
        """
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))
