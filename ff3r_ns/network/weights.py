"""Loading and saving weights: released VGGT-1B and LSeg checkpoints, and FF3R's own checkpoints.

Every load is strict: a missing, unexpected or mis-shaped key is an error that names the keys, and
nothing is copied before the checks pass. Sources are a local path, or a Hugging Face hub id when the
hub is reachable; when a file can't be had, the error says which file to download and where to put it.

FF3R checkpoints are a folder with ``model.safetensors`` (the state dict) and ``config.json``
(``{"format": "ff3r-ns", "version": 1, "config": FF3RConfig.to_dict()}``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn
from torch import Tensor

from ff3r_ns.network.config import FF3RConfig
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.semantic import load_lseg_checkpoint
from ff3r_ns.network.state_dicts import read_state_dict

Source = Union[str, os.PathLike]

VGGT_HUB_ID = "facebook/VGGT-1B"
VGGT_FILES = ("model.safetensors", "model.pt")
VGGT_USED_PREFIXES = ("aggregator.", "camera_head.", "depth_head.")
VGGT_IGNORED_PREFIXES = ("point_head.", "track_head.")
"""Heads of VGGT that FF3R does not have (3D points and tracks)."""
LSEG_DOWNLOAD_HINT = (
    "download LSeg's demo_e200.ckpt (the 'Download the model' link of github.com/isl-org/lang-seg, "
    "ViT-L/16 CLIP backbone) and pass its path"
)
FF3R_FORMAT = "ff3r-ns"
FF3R_VERSION = 1


class WeightsUnavailable(FileNotFoundError):
    """A weight file is neither on disk nor downloadable; the message says what to do."""


def resolve_file(source: Source, filenames: tuple[str, ...], what: str, hint: str) -> Path:
    """A local file for ``source``: the file itself, a folder holding one of ``filenames``, or a hub id.

    Args:
        source: a file, a folder, or a Hugging Face hub id ``owner/name``.
        filenames: the names the file may have inside a folder or hub repository, in order of preference.
        what: what the file is, for the error message.
        hint: what a user should do when it is missing.
    """
    path = Path(os.path.expanduser(str(source)))
    if path.is_file():
        return path
    if path.is_dir():
        for name in filenames:
            if (path / name).is_file():
                return path / name
        raise WeightsUnavailable(f"{what}: none of {list(filenames)} in folder {path}; {hint}")
    if path.is_absolute() or str(source).startswith((".", "~")) or str(source).count("/") != 1:
        raise WeightsUnavailable(f"{what}: {path} does not exist; {hint}")
    errors = []
    for name in filenames:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id=str(source), filename=name))
        except Exception as error:  # offline, missing file, no such repo: all mean "not available"
            errors.append(f"{name}: {type(error).__name__}")
    raise WeightsUnavailable(
        f"{what}: could not get {' or '.join(filenames)} from the Hugging Face hub repository '{source}' "
        f"({'; '.join(errors)}). Download it on a machine with internet access "
        f"(e.g. `hf download {source} {filenames[0]}`) and pass the local file or folder instead; {hint}"
    )


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Tensor], what: str) -> None:
    """Raises a ValueError naming every missing, unexpected and mis-shaped key of ``state_dict``."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped tensors", misshaped)):
        if keys:
            shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(f"{what} does not fit the model: " + "; ".join(problems))


def strict_load(module: nn.Module, state_dict: Mapping[str, Tensor], what: str) -> None:
    """``module.load_state_dict`` that first checks every key and shape and names all offenders."""
    check_state_dict(module, state_dict, what)
    module.load_state_dict(state_dict, strict=True)


def load_vggt_weights(model: FF3R, source: Source = VGGT_HUB_ID) -> None:
    """VGGT-1B's aggregator, camera head and depth head into FF3R (point and track heads are ignored).

    Also accepts AnySplat-style checkpoints that wrap the same modules under a common prefix
    (e.g. ``encoder.aggregator.*``), as long as one prefix precedes every used key.
    """
    hint = f"get {'/'.join(VGGT_FILES)} of the hub repository {VGGT_HUB_ID}"
    state = read_state_dict(resolve_file(source, VGGT_FILES, "VGGT-1B weights", hint))
    prefix = _common_prefix(state, VGGT_USED_PREFIXES[0])
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    unknown = sorted(k for k in state if not k.startswith(VGGT_USED_PREFIXES + VGGT_IGNORED_PREFIXES))
    if unknown:
        raise ValueError(f"VGGT checkpoint {source} has keys of no known VGGT module: {unknown[:20]}")
    parts = {
        name: {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        for name in ("aggregator", "camera_head", "depth_head")
    }
    # Every part is checked before any is copied, so a bad file leaves the model as it was.
    for name, part in parts.items():
        check_state_dict(getattr(model, name), part, f"VGGT checkpoint {source} ({name}.*)")
    for name, part in parts.items():
        getattr(model, name).load_state_dict(part, strict=True)


def _common_prefix(state: Mapping[str, Tensor], marker: str) -> str:
    """The prefix before ``marker`` in the keys that contain it ('' for VGGT's own checkpoint)."""
    prefixes = {k[: k.index(marker)] for k in state if marker in k}
    if not prefixes:
        raise ValueError(f"checkpoint has no '{marker}*' keys; is it a VGGT checkpoint?")
    if len(prefixes) > 1:
        raise ValueError(f"checkpoint has '{marker}*' keys under several prefixes: {sorted(prefixes)}")
    return prefixes.pop()


def load_lseg_weights(model: FF3R, source: Source) -> None:
    """LSeg's ``demo_e200.ckpt`` into FF3R's semantic encoder."""
    load_lseg_checkpoint(model.semantic_encoder, resolve_file(source, ("demo_e200.ckpt",), "LSeg weights", LSEG_DOWNLOAD_HINT))


def save_ff3r_checkpoint(model: FF3R, out_dir: Source, dtype: Optional[torch.dtype] = None) -> Path:
    """Writes ``model.safetensors`` and ``config.json`` to ``out_dir``; ``dtype`` (e.g. float16) shrinks it."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(out / "model.safetensors"))
    meta = {"format": FF3R_FORMAT, "version": FF3R_VERSION, "config": model.config.to_dict()}
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_ff3r_checkpoint(source: Source, device: Union[str, torch.device] = "cpu") -> FF3R:
    """An FF3R network from a checkpoint folder (or hub id) written by ``save_ff3r_checkpoint``."""
    hint = "pass a folder written by save_ff3r_checkpoint (model.safetensors + config.json)"
    weights = resolve_file(source, ("model.safetensors",), "FF3R checkpoint", hint)
    config_path = weights.with_name("config.json")
    if not config_path.is_file():
        config_path = resolve_file(source, ("config.json",), "FF3R checkpoint config", hint)
    meta = json.loads(config_path.read_text())
    if meta.get("format") != FF3R_FORMAT or "config" not in meta:
        raise ValueError(f"{config_path} is not an FF3R config (expected format '{FF3R_FORMAT}' and a 'config' entry)")
    if meta.get("version", 0) > FF3R_VERSION:
        raise ValueError(f"{config_path} has version {meta['version']}; this ff3r-ns reads up to {FF3R_VERSION}")
    model = FF3R(FF3RConfig.from_dict(meta["config"]))
    state = read_state_dict(weights)
    own = model.state_dict()
    # Half-precision checkpoints load into the float32 model.
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in state.items()}
    strict_load(model, state, f"FF3R checkpoint {weights}")
    return model.to(device)
