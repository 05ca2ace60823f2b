"""Reading a state dict from whatever a project released: safetensors, a torch file, a training checkpoint."""

from __future__ import annotations

import os
from typing import Any, Mapping, Union

import torch
from safetensors.torch import load_file
from torch import Tensor

StateSource = Union[str, os.PathLike, Mapping[str, Tensor]]
"""A path to a weights file, or a state dict already in memory."""

WRAPPER_KEYS = ("state_dict", "model")
"""Entries under which training checkpoints keep the weights (Lightning's ``state_dict``, VGGT's ``model``)."""


class _Opaque:
    """Stand-in for the Python objects of a training checkpoint (e.g. Lightning's callback classes), so it
    loads with ``weights_only=True`` without importing their packages."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def read_state_dict(source: StateSource) -> dict[str, Tensor]:
    """Tensors of a state dict, a ``.safetensors`` file or a ``torch.save`` file, on the CPU.

    Torch files load weights-only, with any foreign classes they pickle stubbed out; a checkpoint that
    wraps its weights under one of `WRAPPER_KEYS` is unwrapped.
    """
    if isinstance(source, Mapping):
        state: Any = source
    elif str(source).endswith(".safetensors"):
        state = load_file(str(source))
    else:
        foreign = torch.serialization.get_unsafe_globals_in_checkpoint(source)
        with torch.serialization.safe_globals([(_Opaque, name) for name in foreign]):
            state = torch.load(source, map_location="cpu", weights_only=True)
    for key in WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"{source} holds a {type(state).__name__}, not a state dict")
    return dict(state)
