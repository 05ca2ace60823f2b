"""LSeg's own 2D segmentation as pseudo ground truth (the Feature-3DGS protocol the paper uses for DL3DV).

Where a scene has no semantic annotation, the paper (Appendix A) follows Feature-3DGS and scores the
rendered segmentation of the target views against "semantic masks predicted by LSeg": per pixel, the
argmax over the class prompts of the cosine between LSeg's per-pixel feature and the prompt's CLIP text
embedding (LSeg's logits, :func:`~ff3r_ns.network.semantic.segmentation_logits`). LSeg's features come at
half the resolution of its input; they are upsampled bilinearly to the view's size before the argmax,
as LSeg upsamples its own output. The views are resized to a multiple of LSeg's patch size first, as
FF3R's semantic encoder does.

The encoder is LSeg's released ViT-L/16 (``demo_e200.ckpt``, loaded strictly by
:func:`~ff3r_ns.network.semantic.load_lseg_checkpoint`); the prompts are embedded by LSeg's own text tower,
which the same checkpoint carries (``TextEncoder(weights=demo_e200.ckpt)``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from ff3r_ns.network.config import SemanticConfig
from ff3r_ns.network.semantic import LSegImageEncoder, TextEncoder, load_lseg_checkpoint, segmentation_logits
from ff3r_ns.network.weights import LSEG_DOWNLOAD_HINT, WeightsUnavailable, resolve_file

NO_LSEG = (
    "no LSeg weights were given for the pseudo-labels (LSeg's own 2D argmax, the Feature-3DGS protocol): "
    f"{LSEG_DOWNLOAD_HINT} with --lseg-weights (ns-eval: --pipeline.lseg-weights)"
)
"""Why ``miou_lseg_pseudo`` is absent when no LSeg checkpoint is given."""


class LSegPseudoLabeler(nn.Module):
    """Class ids 1..k of views: LSeg's per-pixel argmax over k prompt embeddings.

    Args:
        encoder: LSeg's image encoder with its weights.
        text: ``[k, 512]`` embeddings of the class prompts (normalized here), in label order.
    """

    def __init__(self, encoder: LSegImageEncoder, text: Float[Tensor, "k c"]) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.register_buffer("text", F.normalize(text.detach().float(), dim=-1))

    @torch.no_grad()
    def forward(self, images: Float[Tensor, "n 3 h w"]) -> Int[Tensor, "n h w"]:
        h, w = images.shape[-2:]
        p = self.encoder.patch_size
        grid = (max(1, round(h / p)) * p, max(1, round(w / p)) * p)
        device = self.text.device
        x = images.to(device).float()
        if grid != (h, w):
            x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False)
        _, features = self.encoder(x)
        features = F.interpolate(features.float(), size=(h, w), mode="bilinear", align_corners=False)
        return segmentation_logits(features, self.text).argmax(dim=1).cpu() + 1


def load_lseg_pseudo_labeler(
    weights: Union[str, Path],
    class_names: Sequence[str],
    text: Optional[Float[Tensor, "k c"]] = None,
    encoder_config: SemanticConfig = SemanticConfig(),
    device: Union[str, torch.device] = "cpu",
) -> LSegPseudoLabeler:
    """LSeg's segmenter from its checkpoint (a ``demo_e200.ckpt`` file or a folder holding one).

    Args:
        weights: The checkpoint.
        class_names: The prompts, in label order.
        text: Their embeddings; None: LSeg's own text tower from the same checkpoint.
        encoder_config: The encoder's sizes (LSeg's release by default).

    Raises:
        WeightsUnavailable: no checkpoint there, saying where to get it.
    """
    path = resolve_file(weights, ("demo_e200.ckpt",), "LSeg weights", LSEG_DOWNLOAD_HINT)
    encoder = LSegImageEncoder(**dataclasses.asdict(encoder_config))
    load_lseg_checkpoint(encoder, path)
    if text is None:
        with torch.no_grad():
            text = TextEncoder(weights=path).eval().encode(list(class_names)).float()
    return LSegPseudoLabeler(encoder, text).to(device)


def lseg_pseudo_labeler(
    weights: Optional[Union[str, Path]],
    class_names: Sequence[str],
    text: Optional[Tensor] = None,
    device: Union[str, torch.device] = "cpu",
) -> tuple[Optional[LSegPseudoLabeler], str]:
    """:func:`load_lseg_pseudo_labeler`, or None and why not (no weights given, or not found)."""
    if weights is None:
        return None, NO_LSEG
    try:
        return load_lseg_pseudo_labeler(weights, class_names, text, device=device), f"LSeg at {weights}"
    except (WeightsUnavailable, FileNotFoundError) as error:
        return None, f"LSeg pseudo-labels unavailable: {error}"
