"""The text embeddings that the segmentation metrics classify with: the paper's class words, or why none.

- A synthetic room (``scripts/make_synthetic.py``) lives in its stand-in teacher's text space: the class
  embeddings of :func:`~ff3r_ns.data.synthetic.class_embeddings` (no CLIP needed, none offline).
- Any other scene: the class words embedded by CLIP ViT-B/32's text tower (LSeg's space), from the given
  weights, else from LSeg's checkpoint (which carries the same tower), else absent with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch

from ff3r_ns.data.classes import CLASS_NAMES
from ff3r_ns.data.synthetic import class_embeddings
from ff3r_ns.eval.evaluate import ClassText
from ff3r_ns.network.semantic import TextEncoder

SYNTHETIC_TEXT = "synthetic class embeddings"
"""``segmentation_text`` of a synthetic room."""


def is_synthetic_room(path: Union[str, Path]) -> bool:
    """Whether the scene at ``path`` (its folder or transforms.json) is a synthetic room written by
    ``scripts/make_synthetic.py``, whose text space is ``class_embeddings()``."""
    path = Path(path)
    transforms = path if path.suffix == ".json" else path / "transforms.json"
    if not transforms.is_file():
        return False
    try:
        return "ff3r_synthetic" in json.loads(transforms.read_text())
    except (OSError, ValueError):
        return False


def class_text(
    scene_root: Union[str, Path], text_encoder_weights: Optional[str] = "openai", lseg_weights: Optional[str] = None
) -> ClassText:
    """Unit embeddings of ``CLASS_NAMES`` for the scene at ``scene_root`` (module docstring), or why none."""
    if is_synthetic_room(scene_root):
        return ClassText(CLASS_NAMES, class_embeddings().float(), SYNTHETIC_TEXT)
    reasons = []
    for weights, what in ((text_encoder_weights, "CLIP ViT-B/32 text encoder"), (lseg_weights, "LSeg's CLIP text tower")):
        if weights is None:
            continue
        try:
            encoder = TextEncoder(weights=weights).eval()
        except FileNotFoundError as error:
            reasons.append(str(error))
            continue
        with torch.no_grad():
            return ClassText(CLASS_NAMES, encoder.encode(list(CLASS_NAMES)).float(), what)
    return ClassText(CLASS_NAMES, None, "no text encoder for the class prompts: " + (" ".join(reasons) or "none given"))
