"""Token-wise fusion (paper Sec. 3.1, Eq. 1): the last-layer geometry tokens attend to the LSeg semantic tokens.

    x'_v = Softmax((x_v^(-1) W_Q)(s_v W_K)^T / sqrt(d_k)) (s_v W_V)        (Eq. 1)

x_v^(-1): patch tokens of view v from the last alternating-attention layer (queries); s_v: semantic tokens
of the same view (keys, values). Here Eq. 1 runs per head and its result enters through a zero-initialized
output projection as a residual: x_v^(-1) + W_O x'_v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from ff3r_ns.network.transformer import RopeTables, apply_rope


def patch_centre_rope(
    grid: tuple[int, int], head_dim: int, frequency: float, scale: float, device: torch.device
) -> RopeTables:
    """2D RoPE tables (format of `ff3r_ns.network.transformer.apply_rope`) at normalized patch centres.

    Patch (i, j) of a grid_h x grid_w grid sits at ((i + 0.5) / grid_h, (j + 0.5) / grid_w) * scale: the same
    point of the image gets the same position whatever the patch size, so grids of two encoders line up.

    Args:
        grid: (grid_h, grid_w) patch grid, tokens in row-major order.
        head_dim: Channels per head (multiple of 4): half rotate with the row, half with the column.
        frequency: Base frequency; inverse frequencies are frequency ** (-2k / (head_dim / 2)).
        scale: Image extent in position units.
        device: Device of the tables.

    Returns:
        (cos, signed sin), each float32 [grid_h * grid_w, head_dim].
    """
    grid_h, grid_w = grid
    rows = (torch.arange(grid_h, device=device, dtype=torch.float32) + 0.5) * (scale / grid_h)
    cols = (torch.arange(grid_w, device=device, dtype=torch.float32) + 0.5) * (scale / grid_w)
    pos = torch.stack((rows.repeat_interleave(grid_w), cols.repeat(grid_h)), dim=-1)  # [P, 2]
    half = head_dim // 2
    inv_freq = frequency ** (-torch.arange(0, half, 2, device=device, dtype=torch.float32) / half)
    angles = pos[:, :, None] * inv_freq  # [P, 2 (row, col), head_dim / 4]
    cos = angles.cos().repeat(1, 1, 2).flatten(1)
    sin = torch.stack((-angles.sin(), angles.sin()), dim=2).flatten(1)
    return cos, sin


class TokenWiseFusion(nn.Module):
    """Cross-attention from geometry tokens (queries) to the same view's semantic tokens (keys, values).

    Position: both token sets get 2D RoPE at their normalized patch centres (`patch_centre_rope`). The two
    grids differ (e.g. 32x32 patches of 14 px vs 28x28 of 16 px at 448 px) but cover the same image, and RoPE
    makes each query-key logit depend on the offset between the two patches in the image, so attention can
    learn to look at the same place without the positions entering the values. An additive embedding would
    mix position into the values (and so into the output), and a fixed distance bias would rule out the
    flash kernel.

    Initialization: the output projection is zero, so at the start the fused tokens are exactly the geometry
    tokens and the pretrained VGGT heads see the input they were trained on; the semantic branch grows from
    there instead of first corrupting the pretrained geometry.

    Args:
        geometry_dim: Dg, channels of the geometry tokens (2048 = frame + global for VGGT-1B).
        semantic_dim: Ds, channels of the semantic tokens (1024 for LSeg's ViT-L).
        num_heads: Attention heads.
        attention_dim: Channels of W_Q, W_K, W_V (default: semantic_dim); d_k = attention_dim / num_heads.
        rope_frequency: RoPE base frequency (100 as in the geometry encoder).
        position_scale: Image extent in RoPE position units; 32 gives the 448 px geometry grid unit spacing.
    """

    def __init__(
        self,
        geometry_dim: int = 2048,
        semantic_dim: int = 1024,
        num_heads: int = 16,
        attention_dim: int | None = None,
        rope_frequency: float = 100.0,
        position_scale: float = 32.0,
    ) -> None:
        super().__init__()
        attention_dim = attention_dim or semantic_dim
        if attention_dim % num_heads or (attention_dim // num_heads) % 4:
            raise ValueError(f"attention_dim {attention_dim} must split into {num_heads} heads of a multiple of 4")
        self.num_heads = num_heads
        self.head_dim = attention_dim // num_heads
        self.rope_frequency = rope_frequency
        self.position_scale = position_scale
        # Both token streams are unnormalized residual outputs; LayerNorm keeps the logits on a fixed scale.
        self.query_norm = nn.LayerNorm(geometry_dim)
        self.context_norm = nn.LayerNorm(semantic_dim)
        self.to_q = nn.Linear(geometry_dim, attention_dim, bias=False)  # W_Q
        self.to_k = nn.Linear(semantic_dim, attention_dim, bias=False)  # W_K
        self.to_v = nn.Linear(semantic_dim, attention_dim, bias=False)  # W_V
        self.out_proj = nn.Linear(attention_dim, geometry_dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor, grid: tuple[int, int]) -> Float[Tensor, "bs heads t d"]:
        """[b, s, t, c] -> per-view heads [b * s, heads, t, head_dim], rotated by their patch positions."""
        b, s, t, _ = x.shape
        x = x.reshape(b * s, t, self.num_heads, self.head_dim).transpose(1, 2)
        rope = patch_centre_rope(grid, self.head_dim, self.rope_frequency, self.position_scale, x.device)
        return apply_rope(x, rope)

    def forward(
        self,
        geometry_tokens: Float[Tensor, "b s p dg"],
        semantic_tokens: Float[Tensor, "b s q ds"],
        patch_start_idx: int,
        geometry_grid: tuple[int, int],
        semantic_grid: tuple[int, int],
    ) -> Float[Tensor, "b s p dg"]:
        """Fuses each view's semantic tokens into its geometry patch tokens.

        Args:
            geometry_tokens: Last-layer tokens of the alternating-attention module: patch_start_idx camera and
                register tokens, then geometry_grid[0] * geometry_grid[1] patch tokens (row-major).
            semantic_tokens: q = semantic_grid[0] * semantic_grid[1] patch tokens per view (row-major).
            patch_start_idx: Tokens before the patches; they pass unchanged.
            geometry_grid: Patch grid of the geometry tokens.
            semantic_grid: Patch grid of the semantic tokens.

        Returns:
            The geometry tokens with semantic context added to the patch tokens.
        """
        b, s, p, _ = geometry_tokens.shape
        if p - patch_start_idx != geometry_grid[0] * geometry_grid[1]:
            raise ValueError(
                f"{p} geometry tokens minus {patch_start_idx} special tokens do not fill the grid {geometry_grid}"
            )
        if semantic_tokens.shape[:2] != (b, s) or semantic_tokens.shape[2] != semantic_grid[0] * semantic_grid[1]:
            raise ValueError(
                f"semantic tokens {tuple(semantic_tokens.shape)} do not match {b} scenes x {s} views of grid "
                f"{semantic_grid}"
            )
        special, patches = geometry_tokens.split((patch_start_idx, p - patch_start_idx), dim=2)
        context = self.context_norm(semantic_tokens)
        q = self._heads(self.to_q(self.query_norm(patches)), geometry_grid)
        k = self._heads(self.to_k(context), semantic_grid)
        v = self.to_v(context)
        v = v.reshape(b * s, -1, self.num_heads, self.head_dim).transpose(1, 2)
        # Eq. 1 per head; SDPA's default scale is 1 / sqrt(d_k). Under autocast q, k follow v's dtype.
        fused = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v)
        fused = fused.transpose(1, 2).reshape(b, s, p - patch_start_idx, -1)
        return torch.cat((special, patches + self.out_proj(fused)), dim=2)
