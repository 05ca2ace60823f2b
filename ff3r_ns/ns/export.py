"""Exporting FF3R reconstructions: standard 3DGS PLY files and the Gaussians' semantic features.

``ns-export gaussian-splat`` already writes an ``FF3RModel`` as a standard 3DGS PLY (it is a splatfacto
model), without semantics. This module adds them, and reads such files back:

- :func:`add_semantic_properties` appends the low-dimensional feature as vertex properties
  ``sem_0 .. sem_{f-1}`` (3DGS viewers ignore properties they don't know);
- :func:`export_semantics` writes a ``.npz`` beside the PLY with the lifted 512-d CLIP-space features,
  row for row with the PLY's vertices, and labels for text queries;
- :func:`write_gaussian_ply` writes what ``ns-export`` writes, without a nerfstudio run;
  :func:`read_gaussian_ply` reads any 3DGS PLY.

nerfstudio 1.1.5's layout (``nerfstudio/scripts/exporter.py``, ``ExportGaussianSplat``): binary little
endian, one ``vertex`` element of float32 properties ``x y z nx ny nz f_dc_0..2 f_rest_* opacity
scale_0..2 rot_0..3``; normals are zero; ``f_rest`` is channel-major as in 3DGS (all coefficients of
red, then green, then blue); opacity is the logit, scales the logs, rotations wxyz. It drops Gaussians
with non-finite values or an opacity logit below -5.5373 (alpha < 1/255), so a PLY's vertex ``i`` is
the ``i``-th Gaussian that :func:`export_mask` keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool
from plyfile import PlyData, PlyElement
from torch import Tensor

from ff3r_ns.network.gaussian_head import SH_C0
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.semantic import TextEncoder
from ff3r_ns.ns.model import FF3RModel, lift_features, semantic_projection

MIN_OPACITY_LOGIT = -5.5373
"""ns-export drops Gaussians whose opacity logit is below this, logit(1/255) as nerfstudio rounds it."""
SEMANTIC_PREFIX = "sem_"
"""Name prefix of the semantic feature's PLY vertex properties."""
CHUNK = 1 << 16
"""Gaussians lifted to 512-d at a time (bounds the float32 working memory to 128 MB)."""

GaussianSource = Union[FF3RModel, Gaussians]


def _as_gaussians(source: GaussianSource) -> Gaussians:
    return source.to_gaussians() if isinstance(source, FF3RModel) else source.detach()


def export_mask(gaussians: Gaussians) -> Bool[Tensor, "n"]:
    """The Gaussians that ``ns-export gaussian-splat`` writes: finite everywhere it looks, and not faint.

    (nerfstudio tests the finiteness of ``x``/``y``/``z`` over all Gaussians at once, so one non-finite
    mean empties its PLY; here it drops that Gaussian only. Finite inputs give the same rows.)
    """
    n = len(gaussians)
    written = [gaussians.means, gaussians.sh.reshape(n, -1), gaussians.opacity_logits[:, None]]
    written += [gaussians.log_scales, gaussians.quats]
    finite = torch.cat([value.float() for value in written], dim=1).isfinite().all(dim=1)
    return finite & (gaussians.opacity_logits >= MIN_OPACITY_LOGIT)


def _ply_columns(gaussians: Gaussians, with_semantic: bool) -> dict[str, np.ndarray]:
    """Vertex properties in ns-export's order, each a float32 [n] array."""
    n = len(gaussians)

    def as_numpy(value: Tensor) -> np.ndarray:  # [n, ...] -> [n, d]
        value = value.detach().float().cpu()
        return (value[:, None] if value.ndim == 1 else value.flatten(1)).numpy()

    means = as_numpy(gaussians.means)
    # 3DGS stores f_rest channel-major: [n, k-1, 3] -> [n, 3, k-1] -> flat.
    rest = as_numpy(gaussians.sh[:, 1:].transpose(1, 2))
    groups = [
        ("x", means[:, :1]), ("y", means[:, 1:2]), ("z", means[:, 2:]),
        ("n", np.zeros((n, 3), np.float32)),  # nx ny nz
        ("f_dc_", as_numpy(gaussians.sh[:, 0])),
        ("f_rest_", rest),
        ("opacity", as_numpy(gaussians.opacity_logits)),
        ("scale_", as_numpy(gaussians.log_scales)),
        ("rot_", as_numpy(gaussians.quats)),
    ]  # fmt: skip
    if with_semantic:
        groups.append((SEMANTIC_PREFIX, as_numpy(gaussians.semantic)))
    columns = {}
    for name, values in groups:
        if name == "n":
            columns.update({axis: values[:, i] for i, axis in enumerate(("nx", "ny", "nz"))})
        elif name.endswith("_"):
            columns.update({f"{name}{i}": values[:, i] for i in range(values.shape[1])})
        else:
            columns[name] = values[:, 0]
    return columns


def _structured(columns: dict[str, np.ndarray]) -> np.ndarray:
    n = len(next(iter(columns.values())))
    vertex = np.empty(n, dtype=[(name, "<f4") for name in columns])
    for name, values in columns.items():
        vertex[name] = values
    return vertex


def write_gaussian_ply(gaussians: GaussianSource, path: Union[str, Path], with_semantic: bool = False) -> None:
    """Writes a 3DGS PLY as ``ns-export gaussian-splat`` does (same properties, order, filter and bytes;
    the header comment differs), optionally with the ``sem_*`` properties appended.

    Args:
        gaussians: An ``FF3RModel`` or ``Gaussians`` of one scene.
        path: The ``.ply`` to write.
        with_semantic: Whether to append the low-dimensional semantic feature as ``sem_0 ..``.
    """
    gaussians = _as_gaussians(gaussians)
    keep = export_mask(gaussians)
    if not bool(keep.any()):
        raise ValueError("no Gaussian is finite and at least 1/255 opaque: nothing to write (ns-export fails alike)")
    vertex = _structured(_ply_columns(gaussians.select(keep), with_semantic))
    PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<", comments=["Generated by ff3r_ns"]).write(str(path))


def read_gaussian_ply(path: Union[str, Path]) -> Gaussians:
    """Reads a 3DGS PLY (ns-export's, the original 3DGS code's, or ours) into ``Gaussians``.

    Colours come from ``f_dc_*``/``f_rest_*`` or, for ns-export's ``rgb`` mode, from ``red green blue``
    as an SH DC term. ``sem_*`` properties, when present, become the semantic feature ([n, 0] otherwise).
    """
    vertex = PlyData.read(str(path))["vertex"].data
    names = set(vertex.dtype.names)

    def stack(prefix: str) -> np.ndarray:
        suffixes = [name[len(prefix) :] for name in names if name.startswith(prefix)]
        indices = sorted(int(suffix) for suffix in suffixes if suffix.isdigit())
        if not indices:
            return np.zeros((len(vertex), 0), np.float32)
        return np.stack([vertex[f"{prefix}{i}"] for i in indices], axis=1)

    required = {"x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"}
    colour = {"f_dc_0", "f_dc_1", "f_dc_2"} if "f_dc_0" in names else {"red", "green", "blue"}
    if missing := sorted((required | colour) - names):
        raise ValueError(f"{path} is not a 3DGS PLY: vertex properties {missing} are missing")
    n = len(vertex)
    if "f_dc_0" in names:
        dc = stack("f_dc_")
    else:  # ns-export's rgb mode stores the clamped colour SH_C0 * dc + 0.5 as bytes
        dc = (np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1) / 255.0 - 0.5) / SH_C0
    rest = stack("f_rest_")
    if rest.shape[1] % 3 or round((rest.shape[1] // 3 + 1) ** 0.5) ** 2 != rest.shape[1] // 3 + 1:
        raise ValueError(f"{path} has {rest.shape[1]} f_rest properties; 3DGS has 3 * ((degree + 1)^2 - 1)")
    rest = rest.reshape(n, 3, rest.shape[1] // 3).transpose(0, 2, 1)  # channel-major -> [n, k-1, 3]

    def tensor(array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    return Gaussians(
        means=tensor(np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)),
        log_scales=tensor(stack("scale_")),
        quats=tensor(stack("rot_")),
        opacity_logits=tensor(vertex["opacity"]),
        sh=tensor(np.concatenate([dc[:, None], rest], axis=1)),
        semantic=tensor(stack(SEMANTIC_PREFIX)),
        batch_index=torch.zeros(n, dtype=torch.long),
    )


def add_semantic_properties(
    ply_path: Union[str, Path], source: GaussianSource, out_path: Optional[Union[str, Path]] = None
) -> Path:
    """Appends ``sem_0 .. sem_{f-1}`` to the vertices of a PLY that ``ns-export`` (or
    :func:`write_gaussian_ply`) wrote from ``source``; existing ``sem_*`` properties are replaced.

    Args:
        ply_path: The PLY to extend.
        source: The model or Gaussians the PLY was written from.
        out_path: Where to write the result; None overwrites ``ply_path``.

    Returns:
        The path written.

    Raises:
        ValueError: If the PLY's vertices are not ``source``'s exported Gaussians (another scene, or an
            ns-export crop box).
    """
    gaussians = _as_gaussians(source)
    gaussians = gaussians.select(export_mask(gaussians))
    ply = PlyData.read(str(ply_path))
    vertex = ply["vertex"].data
    positions = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    expected = gaussians.means.float().cpu().numpy()
    if positions.shape != expected.shape or not np.array_equal(positions, expected):
        raise ValueError(
            f"{ply_path} holds {len(vertex)} vertices that are not the {len(gaussians)} Gaussians ns-export keeps "
            "of this source; export the PLY from the same model, without a crop box"
        )
    columns = {name: vertex[name] for name in vertex.dtype.names if not name.startswith(SEMANTIC_PREFIX)}
    semantic = gaussians.semantic.float().cpu().numpy()
    columns.update({f"{SEMANTIC_PREFIX}{i}": semantic[:, i] for i in range(semantic.shape[1])})
    elements = [
        PlyElement.describe(_structured(columns), "vertex") if element.name == "vertex" else element
        for element in ply.elements
    ]
    out_path = Path(ply_path if out_path is None else out_path)
    PlyData(elements, text=ply.text, byte_order=ply.byte_order, comments=ply.comments, obj_info=ply.obj_info).write(
        str(out_path)
    )
    return out_path


def semantics_path(ply_path: Union[str, Path]) -> Path:
    """The semantic ``.npz`` that goes beside a PLY: ``splat.ply`` -> ``splat.semantics.npz``."""
    return Path(ply_path).with_suffix(".semantics.npz")


@torch.no_grad()
def export_semantics(
    model_or_gaussians: GaussianSource,
    semantic_proj_state: Optional[Mapping[str, Tensor]],
    out_path: Union[str, Path],
    queries: Optional[Sequence[str]] = None,
    text_encoder: Optional[TextEncoder] = None,
) -> Path:
    """Writes the Gaussians' semantic features as a ``.npz``, row ``i`` for PLY vertex ``i``.

    Arrays: ``semantic`` [m, f] float32 (the low-dimensional feature), ``semantic_lifted`` [m, 512]
    float16 (``W f + b``, the CLIP/LSeg space), ``index`` [m] int64 (each row's Gaussian in the source),
    ``semantic_proj_weight`` [512, f] and ``semantic_proj_bias`` [512] (to lift ``sem_*`` elsewhere); with
    queries also ``queries`` [k] str, ``query_embeddings`` [k, 512] float32 and ``labels`` [m] int64
    (the query of highest cosine, computed in float32).

    Args:
        model_or_gaussians: An ``FF3RModel``, or ``Gaussians`` of one scene.
        semantic_proj_state: State dict of the lifting layer (``gaussian_head.semantic_proj``); None for
            a model, which carries its own.
        out_path: The ``.npz`` to write, or the PLY it goes beside (see :func:`semantics_path`).
        queries: Text prompts to label every Gaussian with; None for no labels.
        text_encoder: Encoder for the queries; None builds one from the model config's weights (or
            "openai" for ``Gaussians``), raising FileNotFoundError that names the file when they are absent.

    Returns:
        The path written.
    """
    weights = "openai"
    if isinstance(model_or_gaussians, FF3RModel):
        weights = model_or_gaussians.config.text_encoder_weights
        if semantic_proj_state is None:
            semantic_proj_state = model_or_gaussians.semantic_proj.state_dict()
    elif semantic_proj_state is None:
        raise ValueError("Gaussians carry no lifting layer: pass semantic_proj_state (gaussian_head.semantic_proj)")
    gaussians = _as_gaussians(model_or_gaussians)
    index = torch.nonzero(export_mask(gaussians)).squeeze(1)
    semantic = gaussians.semantic[index].float().cpu()
    projection = semantic_projection(semantic_proj_state).cpu()
    arrays = {
        "semantic": semantic.numpy(),
        "index": index.cpu().numpy(),
        "semantic_proj_weight": projection[:, :-1].numpy(),
        "semantic_proj_bias": projection[:, -1].numpy(),
    }

    text = None
    if queries:
        encoder = text_encoder if text_encoder is not None else TextEncoder(weights=weights).eval()
        text = encoder.encode(list(queries)).float().cpu()
        arrays.update(queries=np.array(list(queries), dtype=str), query_embeddings=text.numpy())
    lifted = np.empty((len(semantic), projection.shape[0]), np.float16)
    labels = np.empty(len(semantic), np.int64)
    for start in range(0, len(semantic), CHUNK):
        chunk = lift_features(semantic[start : start + CHUNK], projection)
        lifted[start : start + len(chunk)] = chunk.numpy()
        if text is not None:
            labels[start : start + len(chunk)] = (F.normalize(chunk, dim=-1) @ text.T).argmax(dim=-1).numpy()
    arrays["semantic_lifted"] = lifted
    if text is not None:
        arrays["labels"] = labels

    out_path = Path(out_path)
    if out_path.suffix == ".ply":
        out_path = semantics_path(out_path)
    with open(out_path, "wb") as file:  # a file object: np.savez would append ".npz" to other names
        np.savez(file, **arrays)
    return out_path
