"""The stand-in 2D semantic teacher: fixed class embeddings and LSeg-like degraded per-view features.

LSeg gives a 512-d feature per pixel at half resolution that is blurry across object boundaries,
sometimes confuses similar classes and is not consistent from view to view. We imitate it from the
class-embedding table ``E = class_embeddings(512)`` and store a compact factored form per view
(``features/*.npz``, version 1; ``h2, w2 = H // 2, W // 2``):

- ``weights``      float16 ``[h2, w2, 8]`` soft class weights: one-hot labels, 2x2-averaged, blurred
  with a Gaussian of a per-view width and mixed by a per-view class-confusion matrix (e.g. 20 % of
  ``chair`` weight moved to ``sofa``); rows sum to 1 (0 where nothing was hit).
- ``drift_planes`` float32 ``[K, 2, 512]`` and ``drift_angles`` float32 ``[K]``: the per-view drift is
  a rotation of feature space by ``drift_angles[k]`` radians in the plane spanned by the orthonormal
  pair ``drift_planes[k]``, applied for k = 0..K-1 in order, then ``drift_offset`` float32 ``[512]``
  is added.
- ``noise_seed`` int64; ``class_noise`` float32 and ``class_noise_cell`` int64; ``feature_noise``
  float32 and ``feature_noise_cell`` int64: two spatially smooth Gaussian noises, each one i.i.d.
  value per node of a grid with ``cell`` half-resolution pixels between nodes (``gh = ceil(h2 /
  cell) + 1`` rows, ``gw`` alike), interpolated bilinearly (``align_corners=True``), cropped to
  ``[h2, w2]``. ``numpy.random.default_rng(noise_seed).standard_normal(dtype=float32)`` draws first
  the class noise nodes ``[8, gh, gw]`` (std ``class_noise``; about 4 cells across the image, so the
  teacher errs on whole object-sized regions; made zero-sum over the classes and added to
  ``weights``), then the feature noise nodes ``[512, gh, gw]`` (std ``feature_noise / sqrt(512)``,
  cell 8 = one 16-pixel ViT patch of LSeg; added to the 512-d feature: it lowers the cosine to the
  class embedding but rarely changes the argmax).
- ``version`` int64 (1).

:func:`load_teacher_features` reconstructs ``f = normalize((weights + class noise) @ drift(E) +
feature noise)``, ``[h2, w2, 512]`` unit-norm, deterministically (numpy's PCG64 stream, float64
drift). 64 views at 448x448 take about 8 MB instead of the 13 GB of raw float16 features.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ff3r_ns.data.classes import BED, CEILING, CHAIR, CLASS_NAMES, OTHER, SOFA, TABLE, WALL
from ff3r_ns.data.synthetic.config import RoomConfig

FEATURE_DIM = 512
TEACHER_VERSION = 1
"""Version of the factored teacher records (``features/*.npz``); independent of the scene's version."""

_EMBEDDING_SEED = 2604_09862
_SHARED_WEIGHT = 0.5  # squared weight of the component shared by all class embeddings: cos ~ 0.5
_EPS = 1e-4  # metres; minimum ray distance, keeps shadow rays off their own surface
_DRIFT_PLANES = 3
_FEATURE_NOISE_CELL = 8  # half-resolution pixels between feature-noise nodes (one 16-pixel LSeg patch)
_CLASS_NOISE_NODES = 4  # class-noise cells across the image: errors at the scale of objects
_CONFUSABLE = ((CHAIR, SOFA), (SOFA, BED), (TABLE, OTHER), (WALL, CEILING), (OTHER, WALL), (BED, OTHER), (CHAIR, TABLE))


def class_embeddings(dim: int = FEATURE_DIM) -> Float[Tensor, "8 dim"]:
    """Fixed unit-norm embeddings of the 8 classes (rows in ``CLASS_NAMES`` order).

    ``e_c = normalize(sqrt(0.5) * s + sqrt(0.5) * g_c)`` with ``s`` and ``g_c`` unit Gaussian vectors
    drawn from a fixed seed: pairwise cosines are about 0.5 (like CLIP text embeddings of class
    words, which are far from orthogonal) yet every class is clearly its own nearest neighbour.
    """
    rng = np.random.default_rng(_EMBEDDING_SEED)
    shared = rng.standard_normal(dim)
    own = rng.standard_normal((len(CLASS_NAMES), dim))
    shared /= np.linalg.norm(shared)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    e = math.sqrt(_SHARED_WEIGHT) * shared + math.sqrt(1.0 - _SHARED_WEIGHT) * own
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return torch.from_numpy(e.astype(np.float32))


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``[h, w, c]`` with edge replication, as fixed-order sums (bit-stable)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-radius, radius + 1)]
    taps = [t / sum(taps) for t in taps]
    for dim in (0, 1):
        n = x.shape[dim]
        index = torch.arange(n)
        out = torch.zeros_like(x)
        for k, tap in zip(range(-radius, radius + 1), taps):
            out += tap * x.index_select(dim, (index + k).clamp(0, n - 1))
        x = out
    return x


def teacher_view(labels: np.ndarray, seed: int, view: int, config: RoomConfig) -> dict[str, np.ndarray]:
    """The factored teacher record of one view (the arrays of its ``.npz``), from its ``[H, W]`` labels."""
    rng = np.random.default_rng([seed, 1, view])
    h, w = labels.shape
    onehot = torch.from_numpy(labels).long()[..., None] == torch.arange(1, 9)
    weights = onehot.float().reshape(h // 2, 2, w // 2, 2, 8).mean((1, 3))
    sigma = rng.uniform(*config.teacher_blur) * (w // 2) / 224.0
    if sigma > 0.3:
        weights = _gaussian_blur(weights, sigma)
    confusion = np.eye(8)
    for pair in rng.choice(len(_CONFUSABLE), size=2, replace=False):
        a, b = _CONFUSABLE[pair]
        if rng.random() < 0.5:
            a, b = b, a
        alpha = rng.uniform(*config.teacher_confusion)
        confusion[a - 1, a - 1] -= alpha
        confusion[a - 1, b - 1] += alpha
    mixed = torch.zeros_like(weights)
    for c in range(8):  # weights @ confusion, in a fixed order
        mixed += weights[..., c : c + 1] * torch.from_numpy(confusion[c].astype(np.float32))
    planes = rng.standard_normal((_DRIFT_PLANES, 2, FEATURE_DIM))
    for k in range(_DRIFT_PLANES):  # Gram-Schmidt: an orthonormal pair per plane
        planes[k, 0] /= np.linalg.norm(planes[k, 0])
        planes[k, 1] -= planes[k, 1] @ planes[k, 0] * planes[k, 0]
        planes[k, 1] /= np.linalg.norm(planes[k, 1])
    offset = rng.standard_normal(FEATURE_DIM)
    offset *= rng.uniform(0.0, config.teacher_drift_offset) / np.linalg.norm(offset)
    return {
        "weights": mixed.numpy().astype(np.float16),
        "drift_planes": planes.astype(np.float32),
        "drift_angles": rng.normal(0.0, config.teacher_drift_angle, _DRIFT_PLANES).astype(np.float32),
        "drift_offset": offset.astype(np.float32),
        "noise_seed": np.asarray(rng.integers(0, 2**62), dtype=np.int64),
        "class_noise": np.asarray(config.teacher_class_noise, dtype=np.float32),
        "feature_noise": np.asarray(config.teacher_feature_noise, dtype=np.float32),
        "class_noise_cell": np.asarray(max(1, min(h, w) // 2 // _CLASS_NOISE_NODES), dtype=np.int64),
        "feature_noise_cell": np.asarray(_FEATURE_NOISE_CELL, dtype=np.int64),
        "version": np.asarray(TEACHER_VERSION, dtype=np.int64),
    }


def _smooth_noise(rng: np.random.Generator, channels: int, height: int, width: int, cell: int, std: float) -> Tensor:
    """Gaussian noise ``[height, width, channels]``: i.i.d. nodes ``[channels, gh, gw]`` (drawn in that
    order) spaced ``cell`` pixels, ``gh = ceil(height / cell) + 1``, interpolated bilinearly."""
    gh, gw = -(-height // cell) + 1, -(-width // cell) + 1
    nodes = rng.standard_normal((channels, gh, gw), dtype=np.float32) * np.float32(std)
    up = F.interpolate(
        torch.from_numpy(nodes)[None],
        size=((gh - 1) * cell + 1, (gw - 1) * cell + 1),
        mode="bilinear",
        align_corners=True,
    )
    return up[0, :, :height, :width].permute(1, 2, 0)


def teacher_features(record: dict[str, np.ndarray], dtype: torch.dtype = torch.float32) -> Float[Tensor, "h2 w2 512"]:
    """Reconstruct the unit-norm 512-d teacher features of a factored record (see the module docstring)."""
    version = int(record["version"])
    if version != TEACHER_VERSION:
        raise ValueError(f"teacher feature file version {version} is not supported (this code reads {TEACHER_VERSION})")
    weights = torch.from_numpy(record["weights"].astype(np.float32))
    h2, w2, num_classes = weights.shape
    embeddings = class_embeddings(FEATURE_DIM).double().numpy()
    for (u, v), angle in zip(record["drift_planes"].astype(np.float64), record["drift_angles"].astype(np.float64)):
        a, b = embeddings @ u, embeddings @ v  # rotate each embedding by `angle` in the (u, v) plane
        c, s = math.cos(angle), math.sin(angle)
        embeddings = embeddings + np.outer(a * (c - 1) - b * s, u) + np.outer(a * s + b * (c - 1), v)
    embeddings = torch.from_numpy((embeddings + record["drift_offset"].astype(np.float64)).astype(np.float32))
    rng = np.random.default_rng(int(record["noise_seed"]))
    class_noise = _smooth_noise(rng, num_classes, h2, w2, int(record["class_noise_cell"]), float(record["class_noise"]))
    weights = weights + class_noise - class_noise.mean(-1, keepdim=True)  # zero-sum: moves weight between classes
    features = (weights.reshape(-1, num_classes) @ embeddings).reshape(h2, w2, FEATURE_DIM)
    feature_std = float(record["feature_noise"]) / math.sqrt(FEATURE_DIM)
    features += _smooth_noise(rng, FEATURE_DIM, h2, w2, int(record["feature_noise_cell"]), feature_std)
    return F.normalize(features, dim=-1).to(dtype)


def load_teacher_features(path: str | Path, dtype: torch.dtype = torch.float32) -> Float[Tensor, "h2 w2 512"]:
    """Read a ``features/*.npz`` file and reconstruct its ``[H/2, W/2, 512]`` unit-norm teacher features."""
    with np.load(path) as data:
        record = {key: data[key] for key in data.files}
    return teacher_features(record, dtype)
