"""Mixed precision as VGGT runs it: bf16 matmuls in the transformers, float32 wherever geometry is made.

VGGT's forward runs its aggregator under bf16 autocast and its heads with autocast off, in float32. Autocast
keeps more than the heads in float32: LayerNorm, softmax and reductions run in float32, and the residual
stream stays float32 (a bf16 branch output added to float32 tokens is float32). Casting the whole network to
bf16 instead loses all of that: a coordinate near 1 keeps 8 mantissa bits (0.004), coarser than a voxel.

FF3R follows VGGT's split:

- the backbone (``BACKBONE_PARTS``: geometry encoder, LSeg encoder, token-wise fusion) runs under autocast
  in ``network.backbone_dtype`` (training's own autocast does the same);
- the heads, the unprojection and the voxelization run with autocast off, on inputs cast to the heads'
  parameter dtype (float32, unless someone cast the whole network).

For inference ``cast_backbone_matmuls`` stores the backbone's matmul weights (Linear, Conv) in bf16 once, so
autocast has nothing to cast per call; autocast rounds a float32 weight to bf16 the same way, so the numbers
are those of float32 weights under autocast, which is VGGT's own inference.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

BACKBONE_PARTS = ("aggregator", "semantic_encoder", "fusion")
"""Top-level FF3R modules whose matmuls run in reduced precision; everything else is float32."""

MATMUL_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
"""Modules whose weights autocast casts to the reduced dtype (norms and LayerScale keep float32)."""


@contextlib.contextmanager
def backbone_autocast(device: torch.device, dtype: Optional[torch.dtype]) -> Iterator[None]:
    """Autocast to ``dtype`` for the backbone; with None or float32, whatever autocast is active stays."""
    if dtype is None or dtype == torch.float32:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off: the heads, unprojection and voxelization run in their parameters' dtype."""
    with torch.autocast(device.type, enabled=False):
        yield


def parameter_dtype(module: nn.Module) -> torch.dtype:
    """dtype of the first floating-point parameter (what its inputs are cast to with autocast off)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def cast_backbone_matmuls(network: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Stores the backbone's matmul weights in ``dtype`` and sets ``network.backbone_dtype`` (inference).

    Norms, LayerScale, positional embeddings, special tokens and all heads stay as they are (float32).
    """
    for name in BACKBONE_PARTS:
        part = getattr(network, name, None)
        if part is None:
            continue
        for module in part.modules():
            if isinstance(module, MATMUL_MODULES):
                module.to(dtype)
    network.backbone_dtype = None if dtype == torch.float32 else dtype
    return network


def prepare_inference(network: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The network on ``device`` in float32 with its backbone set to run in ``dtype`` (VGGT's inference)."""
    network = network.to(device=device, dtype=torch.float32).eval()
    return cast_backbone_matmuls(network, dtype)
