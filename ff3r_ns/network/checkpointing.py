"""Activation checkpointing of the network's parts: keep a part's inputs, recompute its insides in the backward pass.

Training the ``large`` preset at the paper's 16 views of 448 px keeps ~112 GiB of activations without it
(docs/TRAINING.md). Each part named in :data:`NETWORK_PARTS` can be wrapped in non-reentrant
``torch.utils.checkpoint``: the forward pass is the same sequence of operations (so the loss and the gradients
are those of the plain run, to float tolerance), the backward pass runs each wrapped forward once more.
VGGT's own training checkpoints its blocks the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

NETWORK_PARTS = ("patch_embed", "encoder", "semantic", "fusion", "heads", "gaussians")
"""What ``FF3R.set_activation_checkpointing`` can wrap: the DINOv2 blocks, the frame/global block pairs, the
semantic encoder's ViT blocks (while it trains), the token-wise fusion, the DPT heads (per chunk of views), and
the pixel Gaussians' assembly with voxelization."""


def run_checkpointed(enabled: bool, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, checkpointed when ``enabled`` and gradients are being recorded.

    Under ``no_grad`` (inference, a frozen teacher) there is nothing to keep, so the call is plain.
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(function, *args, use_reentrant=False)
    return function(*args)


def chunked_sum(function: Callable[..., Tensor], chunk: Optional[int], *tensors: Tensor, dim: int = 0) -> Tensor:
    """``function(*tensors)`` summed over slices of ``tensors`` along ``dim``, ``chunk`` at a time, each slice's call
    recomputed in the backward pass; ``chunk`` None: one plain call on the whole. ``function`` must return a sum
    over that dimension, so that the chunks add up to the whole (the same value, to float rounding)."""
    if chunk is None:
        return function(*tensors)
    n = tensors[0].shape[dim]
    return sum(
        run_checkpointed(True, function, *(t.narrow(dim, start, min(chunk, n - start)) for t in tensors))
        for start in range(0, n, chunk)
    )


def checkpoint_parts(parts: Union[bool, Iterable[str]], known: tuple[str, ...]) -> frozenset[str]:
    """The set of parts a switch names: True for all of ``known``, False for none, or the names themselves."""
    if parts is True:
        return frozenset(known)
    if parts is False or parts is None:
        return frozenset()
    chosen = frozenset(parts)
    unknown = chosen - set(known)
    if unknown:
        raise ValueError(f"unknown checkpointing parts {sorted(unknown)}; choose among {list(known)}")
    return chosen
