"""DPT dense head (Ranftl et al. 2021) in VGGT's layout: depth + confidence per pixel, or fused features.

Parameter names follow VGGT's ``vggt/heads/dpt_head.py`` (``norm``, ``projects``, ``resize_layers``,
``scratch.layer{1..4}_rn``, ``scratch.refinenet{1..4}``, ``scratch.output_conv1``, ``scratch.output_conv2``),
so the ``depth_head.*`` entries of the VGGT-1B checkpoint load with the prefix stripped.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from ff3r_ns.network.checkpointing import run_checkpointed

# CUDA upsampling kernels index with 32-bit integers; VGGT splits larger outputs along the batch.
_MAX_INTERPOLATE_ELEMENTS = 1_610_612_736


def _interpolate(x: Float[Tensor, "n c h w"], size: tuple[int, int]) -> Float[Tensor, "n c h2 w2"]:
    """Bilinear resize with aligned corners, split along the batch when the output is too large."""
    pieces = x.shape[0] * x.shape[1] * size[0] * size[1] // _MAX_INTERPOLATE_ELEMENTS + 1
    if pieces == 1:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    return torch.cat([F.interpolate(c, size=size, mode="bilinear", align_corners=True) for c in x.chunk(pieces)])


def uv_sincos_embedding(
    height: int, width: int, channels: int, aspect_ratio: float, dtype: torch.dtype, device: torch.device
) -> Float[Tensor, "c h w"]:
    """VGGT's dense positional embedding: sin/cos of a centered UV grid, scaled by 0.1.

    The grid spans the image plane normalized by its diagonal (x in +-aspect/diag, y in +-1/diag, at pixel
    centers). The first half of the channels encodes u, the second v, each as [sin, cos] of frequencies
    100^(-k / (channels / 4)). The grid is built in ``dtype`` as VGGT does, so bf16 runs match.

    Args:
        height: Rows of the feature map.
        width: Columns of the feature map.
        channels: Channels of the feature map (multiple of 4).
        aspect_ratio: Image width over height.
        dtype: Dtype of the grid and of the result.
        device: Device of the result.

    Returns:
        The embedding to add to a [n, channels, height, width] feature map.
    """
    diag = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    edge_x, edge_y = span_x * (width - 1) / width, span_y * (height - 1) / height
    u = torch.linspace(-edge_x, edge_x, width, dtype=dtype, device=device)
    v = torch.linspace(-edge_y, edge_y, height, dtype=dtype, device=device)
    quarter = channels // 4
    omega = 100.0 ** (-torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    angles_u = u.float()[:, None] * omega  # [w, c/4]
    angles_v = v.float()[:, None] * omega  # [h, c/4]
    emb_u = torch.cat((angles_u.sin(), angles_u.cos()), dim=-1)[None].expand(height, -1, -1)
    emb_v = torch.cat((angles_v.sin(), angles_v.cos()), dim=-1)[:, None].expand(-1, width, -1)
    return (0.1 * torch.cat((emb_u, emb_v), dim=-1)).permute(2, 0, 1).to(dtype)


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: relu(x) + conv2(relu(conv1(relu(x)))).

    The skip carries relu(x), not x: VGGT (after DPT) applies an in-place ReLU to the input, and the
    released weights were trained with that.

    Args:
        features: Channels.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Float[Tensor, "n c h w"]) -> Float[Tensor, "n c h w"]:
        """Applies the unit."""
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FeatureFusionBlock(nn.Module):
    """DPT refinement: add the (residual-refined) skip, refine, upsample, 1x1 conv.

    Args:
        features: Channels.
        has_residual: Whether a skip input is fused (False for the coarsest level).
    """

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(
        self,
        x: Float[Tensor, "n c h w"],
        skip: Optional[Float[Tensor, "n c h w"]] = None,
        size: Optional[tuple[int, int]] = None,
    ) -> Float[Tensor, "n c h2 w2"]:
        """Fuses and upsamples.

        Args:
            x: Coarser path.
            skip: Same-resolution features of this level, or None.
            size: Output size; default twice the input size.

        Returns:
            Fused features at ``size``.
        """
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = _interpolate(x, size or (2 * x.shape[-2], 2 * x.shape[-1]))
        return self.out_conv(x)


class DPTHead(nn.Module):
    """DPT head on four token layers of the geometry encoder.

    Each layer's patch tokens are LayerNormed, projected by a 1x1 conv to ``out_channels[i]`` and resized
    to 4x, 2x, 1x and 0.5x the patch grid; ``scratch`` fuses them coarse to fine, and the result is resized
    to the input resolution / ``down_ratio``. Positional sin/cos embeddings are added after each projection
    and after the last resize when ``pos_embed``.

    Token indexing: ``tokens_list[i]`` must be the encoder output of layer ``intermediate_layer_idx[i]``,
    i.e. ``tokens_list`` is exactly what ``GeometryEncoder.forward(images, keep_layers=head.intermediate_layer_idx)``
    returns (4 tensors, not all ``depth`` layers).

    Args:
        dim_in: Token channels (2C: frame and global outputs concatenated).
        patch_size: Patch side in pixels.
        output_dim: Output channels; the last is the confidence, the others the prediction.
        activation: Activation of the prediction channels.
        conf_activation: Activation of the confidence channel ("expp1": 1 + exp).
        features: Channels of the fusion path.
        out_channels: Channels of the four projected layers.
        intermediate_layer_idx: Encoder layers this head reads, to request from the encoder.
        pos_embed: Add sin/cos positional embeddings.
        feature_only: Return the fused features (``features`` channels) instead of predictions.
        down_ratio: Output resolution divisor.
    """

    def __init__(
        self,
        dim_in: int = 2048,
        patch_size: int = 14,
        output_dim: int = 2,
        activation: Literal["exp", "linear"] = "exp",
        conf_activation: Literal["expp1"] = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        if activation not in ("exp", "linear") or conf_activation != "expp1":
            raise ValueError(f"unsupported activations {activation!r}, {conf_activation!r}")
        if len(out_channels) != 4 or len(intermediate_layer_idx) != 4:
            raise ValueError("DPTHead fuses exactly 4 layers: give 4 out_channels and 4 intermediate_layer_idx")
        self.patch_size = patch_size
        self.activation = activation
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.intermediate_layer_idx = tuple(intermediate_layer_idx)

        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, kernel_size=1) for oc in out_channels)
        c0, c1, _, c3 = out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),
                nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, oc in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, kernel_size=3, padding=1, bias=False))
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, output_dim, kernel_size=1),
            )
        self._pos_cache: dict[tuple, Tensor] = {}
        self.checkpointing = False
        """Recompute each chunk of views in the backward pass; only the chunk's outputs are kept."""

    def forward(
        self,
        tokens_list: Sequence[Float[Tensor, "b s p c"]],
        images: Float[Tensor, "b s 3 h w"],
        patch_start_idx: int,
        frames_chunk_size: Optional[int] = 8,
    ) -> Union[tuple[Float[Tensor, "b s h w d"], Float[Tensor, "b s h w"]], Float[Tensor, "b s f h w"]]:
        """Predicts per-pixel outputs, ``frames_chunk_size`` views at a time to bound activation memory.

        Args:
            tokens_list: The 4 encoder layers listed in ``intermediate_layer_idx``, in that order.
            images: The input views (only their size is used).
            patch_start_idx: Index of the first patch token in each view's tokens.
            frames_chunk_size: Views per chunk; None or 0 processes all views at once.

        Returns:
            (prediction [b, s, h, w, output_dim - 1], confidence [b, s, h, w]) for depth: d = 1, depth =
            exp(.), conf = 1 + exp(.); or, with feature_only, the fused features [b, s, features, h, w].
            h, w are the input size / down_ratio.
        """
        if len(tokens_list) != len(self.intermediate_layer_idx):
            raise ValueError(
                f"DPTHead takes the {len(self.intermediate_layer_idx)} layers {self.intermediate_layer_idx} "
                f"(encoder keep_layers), got {len(tokens_list)} tensors"
            )
        s = images.shape[1]
        chunk = frames_chunk_size or s
        outputs = [
            run_checkpointed(self.checkpointing, self._forward_views, tokens_list, images, patch_start_idx, i, min(i + chunk, s))
            for i in range(0, s, chunk)
        ]
        if self.feature_only:
            return torch.cat(outputs, dim=1)
        return torch.cat([o[0] for o in outputs], dim=1), torch.cat([o[1] for o in outputs], dim=1)

    def _positions(self, x: Tensor, aspect_ratio: float) -> Tensor:
        key = (*x.shape[1:], aspect_ratio, x.dtype, str(x.device))
        if key not in self._pos_cache:
            self._pos_cache[key] = uv_sincos_embedding(*x.shape[2:], x.shape[1], aspect_ratio, x.dtype, x.device)
        return self._pos_cache[key]

    def _forward_views(self, tokens_list, images, patch_start_idx: int, start: int, end: int):
        b, _, _, h, w = images.shape
        n = b * (end - start)
        grid_h, grid_w = h // self.patch_size, w // self.patch_size
        levels = []
        for tokens, project, resize in zip(tokens_list, self.projects, self.resize_layers):
            x = self.norm(tokens[:, start:end, patch_start_idx:].flatten(0, 1))
            # The 1x1 projection as a matmul on channel-last tokens, then a free permute to NCHW.
            x = F.linear(x, project.weight.flatten(1), project.bias).view(n, grid_h, grid_w, -1).permute(0, 3, 1, 2)
            if self.pos_embed:
                x = x + self._positions(x, w / h)
            levels.append(resize(x))

        rn = [getattr(self.scratch, f"layer{i}_rn")(x) for i, x in enumerate(levels, start=1)]
        out = self.scratch.refinenet4(rn[3], size=rn[2].shape[2:])
        out = self.scratch.refinenet3(out, rn[2], size=rn[1].shape[2:])
        out = self.scratch.refinenet2(out, rn[1], size=rn[0].shape[2:])
        out = self.scratch.refinenet1(out, rn[0])
        out = self.scratch.output_conv1(out)
        size = (grid_h * self.patch_size // self.down_ratio, grid_w * self.patch_size // self.down_ratio)
        out = _interpolate(out, size)
        if self.pos_embed:
            out = out + self._positions(out, w / h)
        if self.feature_only:
            return out.view(b, end - start, *out.shape[1:])

        out = self.scratch.output_conv2(out).permute(0, 2, 3, 1)  # [n, h, w, output_dim]
        pred = out[..., :-1].exp() if self.activation == "exp" else out[..., :-1]
        conf = 1 + out[..., -1].exp()
        return pred.view(b, end - start, *pred.shape[1:]), conf.view(b, end - start, *conf.shape[1:])
