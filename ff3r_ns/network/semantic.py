"""Semantic encoder (paper Sec. 3.1): LSeg's image encoder (ViT-L/16 + DPT decoder) and CLIP's text tower.

The image encoder gives FF3R its semantic tokens s_v (the ViT's last-layer patch tokens, fused into the
geometry tokens by `TokenWiseFusion`) and the per-pixel CLIP-LSeg features F that supervise the rendered
feature maps. The text encoder maps prompts into the same 512-d space for open-vocabulary queries.

LSeg checkpoint layout (``demo_e200.ckpt``, a Lightning checkpoint of ``LSegModule`` whose ``net`` is an
``LSegNet``; isl-org/lang-seg ``modules/models/lseg_{net,blocks,vit}.py``), keys after stripping ``net.``:

- ``pretrained.model.*``: timm ``vit_large_patch16_384`` (timm 0.4.12 names, identical in timm 1.x).
- ``pretrained.act_postprocess{1..4}``: ``nn.Sequential`` of readout projection (index 0, ``project.0`` =
  Linear 2D -> D), transpose and unflatten (1, 2; no parameters), 1x1 conv D -> (256, 512, 1024, 1024)
  (3), resample (4): 4x and 2x transposed convs, nothing, 3x3 conv of stride 2.
- ``scratch.layer{1..4}_rn``: 3x3 convs to 256 channels without bias.
- ``scratch.refinenet{1..4}``: fusion blocks (``resConfUnit1``, ``resConfUnit2`` with ``conv1``, ``bn1``,
  ``conv2``, ``bn2``; ``out_conv``); BatchNorm, so the convs of the units have no bias.
- ``scratch.head1``: 1x1 conv 256 -> 512. ``scratch.output_conv`` is a parameter-free 2x upsampling.
- ``clip_pretrained.*``: the whole OpenAI CLIP ViT-B/32 (``clip.load``), image and text towers.

LSeg's ``logit_scale`` is ``nn.Parameter(...).exp()``, a plain tensor, so it is not in the state dict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import open_clip
import torch
import torch.nn.functional as F
from jaxtyping import Float
from open_clip.pretrained import download_pretrained_from_hf
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ff3r_ns.network.checkpointing import run_checkpointed
from ff3r_ns.network.state_dicts import StateSource, read_state_dict

LSEG_UNUSED_KEYS: tuple[str, ...] = (
    # CLIP ViT-B/32: its image tower is not part of LSeg's image path, its text tower is `TextEncoder`'s.
    "clip_pretrained.",
    # timm's ImageNet classifier; LSeg only reads block outputs.
    "pretrained.model.head.",
    # The coarsest fusion block gets no skip input, so LSeg never calls its first residual unit.
    "scratch.refinenet4.resConfUnit1.",
)
"""Checkpoint key prefixes (after ``net.``) that `load_lseg_checkpoint` skips on purpose; all others must match."""


def _lseg_key_prefixes(levels: int = 4) -> tuple[tuple[str, str], ...]:
    """(our prefix, LSeg prefix) pairs; every parameter of `LSegImageEncoder` falls under exactly one."""
    pairs = [("vit.", "pretrained.model."), ("head.", "scratch.head1.")]
    for i in range(levels):
        act, ref = f"pretrained.act_postprocess{i + 1}.", f"scratch.refinenet{i + 1}."
        pairs += [
            (f"reassemble.{i}.readout.", act + "0.project.0."),
            (f"reassemble.{i}.project.", act + "3."),
            (f"reassemble.{i}.resample.", act + "4."),
            (f"layer_rn.{i}.", f"scratch.layer{i + 1}_rn."),
            (f"refine.{i}.skip_unit.", ref + "resConfUnit1."),
            (f"refine.{i}.unit.", ref + "resConfUnit2."),
            (f"refine.{i}.out_conv.", ref + "out_conv."),
        ]
    return tuple(pairs)


_LSEG_KEY_PREFIXES = _lseg_key_prefixes()


def lseg_key(name: str) -> str:
    """LSeg checkpoint key (without ``net.``) of a `LSegImageEncoder` state-dict entry."""
    for ours, theirs in _LSEG_KEY_PREFIXES:
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    raise KeyError(f"{name} has no counterpart in LSeg's layout")


class Reassemble(nn.Module):
    """DPT reassemble stage of one hooked ViT layer: tokens -> feature map at a fixed scale of the patch grid.

    The class token is folded into every patch token by a learned projection (LSeg's ``readout="project"``),
    then a 1x1 conv sets the channels and the map is resampled by ``scale`` (4, 2, 1 or 0.5).

    Args:
        embed_dim: ViT channels D.
        out_dim: Channels of the feature map.
        scale: Resampling factor relative to the patch grid.
    """

    def __init__(self, embed_dim: int, out_dim: int, scale: float) -> None:
        super().__init__()
        self.readout = nn.Linear(2 * embed_dim, embed_dim)
        self.project = nn.Conv2d(embed_dim, out_dim, kernel_size=1)
        if scale > 1:
            self.resample = nn.ConvTranspose2d(out_dim, out_dim, kernel_size=int(scale), stride=int(scale))
        elif scale == 1:
            self.resample = nn.Identity()
        elif scale == 0.5:
            self.resample = nn.Conv2d(out_dim, out_dim, kernel_size=3, stride=2, padding=1)
        else:
            raise ValueError(f"unsupported reassemble scale {scale}; use 4, 2, 1 or 0.5")

    def forward(self, tokens: Float[Tensor, "n 1+p d"], grid: tuple[int, int]) -> Float[Tensor, "n c h w"]:
        """Maps class + patch tokens (p = grid[0] * grid[1], row-major) to a feature map."""
        patches, cls = tokens[:, 1:], tokens[:, :1].expand(-1, tokens.shape[1] - 1, -1)
        x = F.gelu(self.readout(torch.cat((patches, cls), dim=-1)))
        x = x.transpose(1, 2).unflatten(2, grid)
        return self.resample(self.project(x))


class ResidualConvUnitBN(nn.Module):
    """LSeg's residual unit: x + bn2(conv2(relu(bn1(conv1(relu(x)))))); convs without bias (BatchNorm has one).

    Unlike VGGT's unit (`ff3r_ns.network.dpt.ResidualConvUnit`) the skip carries x itself: LSeg's ReLU is not
    in place.

    Args:
        features: Channels.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(features)

    def forward(self, x: Float[Tensor, "n c h w"]) -> Float[Tensor, "n c h w"]:
        """Applies the unit."""
        out = self.bn1(self.conv1(F.relu(x)))
        return x + self.bn2(self.conv2(F.relu(out)))


class FusionBlockBN(nn.Module):
    """LSeg's DPT fusion block: add the refined skip, refine, upsample (bilinear, aligned corners), 1x1 conv.

    Args:
        features: Channels.
        has_skip: Whether a skip input is fused (False for the coarsest level).
    """

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnitBN(features) if has_skip else None
        self.unit = ResidualConvUnitBN(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(
        self, x: Float[Tensor, "n c h w"], skip: Optional[Float[Tensor, "n c h w"]], size: tuple[int, int]
    ) -> Float[Tensor, "n c h2 w2"]:
        """Fuses ``skip`` (None at the coarsest level) into ``x`` and resizes to ``size``."""
        if skip is not None:
            x = x + self.skip_unit(skip)
        x = F.interpolate(self.unit(x), size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class LSegImageEncoder(nn.Module):
    """LSeg's image encoder: ViT + DPT decoder to L2-normalizable per-pixel CLIP features at half resolution.

    The ViT is timm's ``VisionTransformer`` (``vit_large_patch16_384`` at the defaults) without its classifier.
    Images are taken in [0, 1] and normalized with mean = std = 0.5 inside, as LSeg was trained. Other sizes
    than ``image_size`` work: the learned positions are resized bilinearly as LSeg does (e.g. 448 px -> 28x28).
    Load LSeg's weights with `load_lseg_checkpoint`.

    Args:
        image_size: Training resolution, fixing the learned position grid.
        patch_size: Patch side in pixels.
        embed_dim: ViT channels.
        depth: ViT blocks.
        num_heads: ViT attention heads.
        hooks: Blocks (increasing) whose outputs feed the decoder at 1/4, 1/8, 1/16 and 1/32 resolution.
        reassemble_dims: Channels of the four reassembled maps.
        features: Channels of the fusion path.
        out_dim: Channels of the output features (CLIP's 512).
    """

    def __init__(
        self,
        image_size: int = 384,
        patch_size: int = 16,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        hooks: Sequence[int] = (5, 11, 17, 23),
        reassemble_dims: Sequence[int] = (256, 512, 1024, 1024),
        features: int = 256,
        out_dim: int = 512,
    ) -> None:
        super().__init__()
        if len(hooks) != 4 or list(hooks) != sorted(hooks) or hooks[-1] >= depth:
            raise ValueError(f"hooks must be 4 increasing block indices below depth {depth}, got {hooks}")
        self.patch_size = patch_size
        self.hooks = tuple(hooks)
        self.grid = image_size // patch_size
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_classes=0,
        )
        self.reassemble = nn.ModuleList(
            Reassemble(embed_dim, dim, scale) for dim, scale in zip(reassemble_dims, (4, 2, 1, 0.5))
        )
        self.layer_rn = nn.ModuleList(
            nn.Conv2d(dim, features, kernel_size=3, padding=1, bias=False) for dim in reassemble_dims
        )
        self.refine = nn.ModuleList(FusionBlockBN(features, has_skip=i < 3) for i in range(4))
        self.head = nn.Conv2d(features, out_dim, kernel_size=1)
        self.checkpointing = False
        """Recompute each ViT block in the backward pass (only matters while the encoder trains)."""

    def position_embedding(self, grid_h: int, grid_w: int) -> Float[Tensor, "1 1+p d"]:
        """Learned positions (class + patches) for a grid_h x grid_w patch grid, resized as LSeg does."""
        pos = self.vit.pos_embed
        if (grid_h, grid_w) == (self.grid, self.grid):
            return pos
        grid = pos[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        return torch.cat((pos[:, :1], grid.flatten(2).transpose(1, 2)), dim=1)

    def forward(
        self, images: Float[Tensor, "n 3 h w"]
    ) -> tuple[Float[Tensor, "n p c_vit"], Float[Tensor, "n c_out h/2 w/2"]]:
        """Semantic tokens and per-pixel features.

        Args:
            images: RGB in [0, 1]; h and w multiples of ``patch_size``.

        Returns:
            tokens: The ViT's last-layer patch tokens after its final LayerNorm (no class token),
                p = (h / patch_size) * (w / patch_size), row-major.
            features: LSeg's per-pixel features (not normalized; LSeg compares them by cosine).
        """
        n, _, h, w = images.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}; resize it")
        grid = (h // self.patch_size, w // self.patch_size)
        x = self.vit.patch_embed.proj(images * 2.0 - 1.0).flatten(2).transpose(1, 2)
        x = torch.cat((self.vit.cls_token.expand(n, -1, -1), x), dim=1) + self.position_embedding(*grid)
        hooked = []
        for i, block in enumerate(self.vit.blocks):
            x = run_checkpointed(self.checkpointing, block, x)
            if i in self.hooks:
                hooked.append(x)
        # Normalized tokens keep the fusion's keys and values on a fixed scale whatever the residual stream does.
        # LSeg computes but never uses this norm, so its checkpoint holds timm's ImageNet values for it.
        tokens = self.vit.norm(x)[:, 1:]

        maps = [rn(reassemble(t, grid)) for t, reassemble, rn in zip(hooked, self.reassemble, self.layer_rn)]
        # Each level is upsampled to the next finer map's size (LSeg: exactly 2x), so odd grids work too.
        path = self.refine[3](maps[3], None, maps[2].shape[-2:])
        for level in (2, 1):
            path = self.refine[level](path, maps[level], maps[level - 1].shape[-2:])
        path = self.refine[0](path, maps[0], (2 * maps[0].shape[-2], 2 * maps[0].shape[-1]))
        return tokens, self.head(path)


def load_lseg_checkpoint(module: LSegImageEncoder, checkpoint: StateSource) -> None:
    """Loads LSeg's released weights (``demo_e200.ckpt``) into ``module``, checking every key and shape.

    Keys may carry the ``net.`` prefix of the Lightning module. Only the prefixes of `LSEG_UNUSED_KEYS` are
    skipped; any missing, unexpected or mis-shaped entry raises before anything is copied.

    Args:
        module: Encoder built with the checkpoint's sizes (the constructor's defaults for LSeg's release).
        checkpoint: Path of the checkpoint, or its (possibly Lightning-wrapped) state dict.

    Raises:
        ValueError: Naming every key that is missing, unexpected or of the wrong shape.
    """
    state = {key.removeprefix("net."): value for key, value in read_state_dict(checkpoint).items()}
    own = module.state_dict()
    ours_of = {lseg_key(name): name for name in own}
    missing = sorted(key for key in ours_of if key not in state)
    unexpected = sorted(key for key in state if key not in ours_of and not key.startswith(LSEG_UNUSED_KEYS))
    misshaped = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(own[name].shape)})"
        for key, name in ours_of.items()
        if key in state and state[key].shape != own[name].shape
    ]
    problems = [
        f"{label}: {', '.join(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
        if keys
    ]
    if problems:
        raise ValueError(
            "LSeg checkpoint does not match the encoder (keys without 'net.'; is the encoder built with "
            "the constructor's defaults, LSeg's ViT-L/16?) -- " + "; ".join(problems)
        )
    module.load_state_dict({name: state[key] for key, name in ours_of.items()}, strict=True)


CLIP_MODEL = "ViT-B-32"
CLIP_HF_REPO = "timm/vit_base_patch32_clip_224.openai"
CLIP_WEIGHTS_FILE = "open_clip_model.safetensors"
_LSEG_CLIP_PREFIX = "net.clip_pretrained."


def _clip_weights_path(weights: Union[str, os.PathLike], cache_dir: Optional[str]) -> Path:
    """Local file of the CLIP weights: ``weights`` itself, or the Hub download for ``"openai"``."""
    url = f"https://huggingface.co/{CLIP_HF_REPO}/resolve/main/{CLIP_WEIGHTS_FILE}"
    advice = (
        f"Download {url} and pass its path as TextEncoder(weights=...), or put it in the Hugging Face cache "
        f"with `hf download {CLIP_HF_REPO} {CLIP_WEIGHTS_FILE}`. LSeg's demo_e200.ckpt works too: it carries "
        "the same text tower."
    )
    if weights == "openai":
        try:
            return Path(download_pretrained_from_hf(CLIP_HF_REPO, cache_dir=cache_dir))
        except Exception as error:  # offline, no cache, or the Hub unreachable: all end the same way
            raise FileNotFoundError(f"CLIP ViT-B/32 (OpenAI) weights are not available ({error}). {advice}") from None
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP ViT-B/32 weights not found at {path}. {advice}")
    return path


class TextEncoder(nn.Module):
    """CLIP ViT-B/32 text tower (OpenAI weights, the one LSeg was trained against) through open_clip.

    The image tower is dropped after construction: only prompts are encoded.

    Args:
        weights: ``"openai"`` (Hugging Face hub or its local cache), a local file (open_clip
            ``.safetensors``/``.bin`` state dict, or LSeg's ``demo_e200.ckpt``), or None for random weights.
        cache_dir: Hugging Face cache directory for ``"openai"``; None for the default.

    Raises:
        FileNotFoundError: If the weights are not at hand, saying which file to download and where to put it.
    """

    def __init__(self, weights: Union[str, os.PathLike, None] = "openai", cache_dir: Optional[str] = None) -> None:
        super().__init__()
        path = None if weights is None else _clip_weights_path(weights, cache_dir)
        # OpenAI's CLIP was trained with QuickGELU; open_clip's plain "ViT-B-32" config uses nn.GELU.
        self.clip = open_clip.create_model(CLIP_MODEL, pretrained=None, force_quick_gelu=True)
        del self.clip.visual
        self.tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
        if path is not None:
            self.load_weights(path)

    def load_weights(self, source: StateSource) -> None:
        """Loads the text tower from an open_clip state dict or from LSeg's checkpoint, strictly.

        Args:
            source: Path or state dict; image-tower entries (``visual.*``) are skipped.
        """
        state = read_state_dict(source)
        if any(key.startswith(_LSEG_CLIP_PREFIX) for key in state):
            state = {k.removeprefix(_LSEG_CLIP_PREFIX): v for k, v in state.items() if k.startswith(_LSEG_CLIP_PREFIX)}
        self.clip.load_state_dict({k: v for k, v in state.items() if not k.startswith("visual.")}, strict=True)

    def encode(self, prompts: Sequence[str]) -> Float[Tensor, "k 512"]:
        """L2-normalized text embeddings of k prompts."""
        tokens = self.tokenizer(list(prompts)).to(self.clip.token_embedding.weight.device)
        return self.clip.encode_text(tokens, normalize=True)


def segmentation_logits(
    features: Float[Tensor, "n c h w"], text: Float[Tensor, "k c"], temperature: float = 0.07
) -> Float[Tensor, "n k h w"]:
    """LSeg's per-pixel class logits: cosine of pixel and text embeddings over a fixed temperature.

    Args:
        features: Per-pixel features (any scale; normalized here).
        text: Text embeddings (normalized here).
        temperature: LSeg's logit scale is exp(log(1 / 0.07)).

    Returns:
        Logits, (1 / temperature) * cos(feature, text).
    """
    cos = torch.einsum("nchw,kc->nkhw", F.normalize(features, dim=1), F.normalize(text, dim=-1))
    return cos / temperature
