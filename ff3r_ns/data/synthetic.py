"""Procedural indoor rooms with ground truth: images, depth, poses, class labels and a stand-in teacher.

A room is a closed box (floor, four walls, ceiling) furnished with chairs, tables, sofas, beds and
"other" things (shelves with books, cabinets, lamps, plants, a TV, pictures, a door, a rug, ceiling
lights), each built from textured boxes and vertical cylinders. Views are rendered by ray casting in
torch (all pixels of a view at once, CPU, float32) along a smooth closed camera path, with Lambertian
shading from ceiling lights (shadows included), a hemispherical ambient term and a cheap ambient-occlusion
darkening near the floor, in room corners and around furniture footprints.

Conventions
-----------
- World: metres, z up; the room spans ``x in [-W/2, W/2]``, ``y in [-D/2, D/2]``, ``z in [0, H]``.
- In memory, poses are OpenCV camera-to-world (``ff3r_ns.data.scene``); ``transforms.json`` stores the
  nerfstudio/OpenGL ones (camera y and z negated). Pixel centres are at ``(u + 0.5, v + 0.5)`` and the
  principal point is the image centre ``(W / 2, H / 2)`` (``ff3r_ns.network.cameras``).
- Depth is z-depth along the optical axis. Every ray hits the closed room, so 0 never occurs in practice.
- Class ids: 0 nothing, then 1..8 = ``CLASS_NAMES`` (wall, floor, ceiling, chair, table, sofa, bed,
  other), the evaluation classes of the paper. Pictures, doors, rugs, books, lamps, pillows of the
  ``other`` furniture are ``other``; pillows and blankets of a bed are ``bed``.

Scene folder written by :func:`write_scene` (a nerfstudio scene)
----------------------------------------------------------------
``transforms.json``: ``camera_model "OPENCV"`` (zero distortion), ``fl_x fl_y cx cy w h``,
``depth_unit_scale_factor 0.001``, ``ff3r_synthetic {seed, classes, version, config}`` (``config``
is the :class:`RoomConfig` that regenerates the scene), and per frame ``file_path``
(``images/frame_00000.png``, RGB 8-bit), ``transform_matrix`` (OpenGL camera-to-world),
``depth_file_path`` (``depth/frame_00000.png``, uint16 millimetres, 0 = no hit),
``semantic_file_path`` (``labels/frame_00000.png``, uint8 class ids) and ``feature_file_path``
(``features/frame_00000.npz``, below). Files are bit-identical for the same config.

Stand-in 2D semantic teacher (``features/*.npz``, version 1)
------------------------------------------------------------
LSeg gives a 512-d feature per pixel at half resolution that is blurry across object boundaries,
sometimes confuses similar classes and is not consistent from view to view. We imitate it from the
class-embedding table ``E = class_embeddings(512)`` and store a compact factored form per view
(``h2, w2 = H // 2, W // 2``):

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

import io
import json
import math
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from ff3r_ns.data.classes import BED, CEILING, CHAIR, CLASS_NAMES, FLOOR, OTHER, SOFA, TABLE, WALL  # noqa: F401
from ff3r_ns.network.cameras import opencv_to_opengl_c2w


FORMAT_VERSION = 1
FEATURE_DIM = 512

_EMBEDDING_SEED = 2604_09862
_SHARED_WEIGHT = 0.5  # squared weight of the component shared by all class embeddings: cos ~ 0.5
_EPS = 1e-4  # metres; minimum ray distance, keeps shadow rays off their own surface
_DRIFT_PLANES = 3
_FEATURE_NOISE_CELL = 8  # half-resolution pixels between feature-noise nodes (one 16-pixel LSeg patch)
_CLASS_NOISE_NODES = 4  # class-noise cells across the image: errors at the scale of objects
_CONFUSABLE = ((CHAIR, SOFA), (SOFA, BED), (TABLE, OTHER), (WALL, CEILING), (OTHER, WALL), (BED, OTHER), (CHAIR, TABLE))


@dataclass
class RoomConfig:
    """Everything that defines one synthetic scene; the same config gives bit-identical files."""

    seed: int = 0
    """Random seed of the room layout, materials, camera path and teacher degradation."""
    num_views: int = 64
    """Number of views along the closed camera path."""
    image_size: int = 448
    """Width and height of the (square) images in pixels; even, at least 16."""
    fov_deg: float = 70.0
    """Horizontal (and vertical) field of view in degrees."""
    room_width: tuple[float, float] = (4.0, 7.0)
    """Range of the room's extent along x in metres."""
    room_depth: tuple[float, float] = (4.0, 7.0)
    """Range of the room's extent along y in metres."""
    room_height: tuple[float, float] = (2.5, 3.1)
    """Range of the ceiling height in metres."""
    num_chairs: tuple[int, int] = (2, 6)
    """Range (inclusive) of the number of chairs; they go around tables first, then along walls."""
    num_tables: tuple[int, int] = (1, 2)
    """Range (inclusive) of the number of tables (dining, round, or a coffee table in front of a sofa)."""
    num_sofas: tuple[int, int] = (0, 1)
    """Range (inclusive) of the number of sofas (against a wall)."""
    num_beds: tuple[int, int] = (0, 1)
    """Range (inclusive) of the number of beds (headboard against a wall)."""
    num_others: tuple[int, int] = (2, 5)
    """Range (inclusive) of the number of "other" furniture pieces (shelves, cabinets, lamps, plants,
    TV); pictures, a door, a rug and ceiling lights are added on top."""
    camera_height: tuple[float, float] = (1.3, 1.8)
    """Range of the camera height above the floor in metres along the path."""
    camera_wall_margin: float = 1.1
    """Distance in metres between the camera path (an ellipse) and the walls."""
    shadows: bool = True
    """Cast shadow rays towards the lights (about doubles the rendering time)."""
    teacher_blur: tuple[float, float] = (1.5, 3.5)
    """Range of the teacher's per-view Gaussian blur sigma in half-resolution pixels at 448x448
    (scaled with the image size)."""
    teacher_confusion: tuple[float, float] = (0.1, 0.35)
    """Range of the fraction of a class's weight moved to a confusable class in a view."""
    teacher_class_noise: float = 0.4
    """Std of the smooth per-class noise added to the teacher's soft class weights."""
    teacher_feature_noise: float = 1.0
    """Norm of the smooth isotropic noise added to the 512-d teacher feature."""
    teacher_drift_angle: float = 0.15
    """Std in radians of each of the per-view drift rotations of the teacher's feature space."""
    teacher_drift_offset: float = 0.15
    """Largest norm of the per-view offset added to the teacher's class embeddings."""

    def __post_init__(self) -> None:
        if self.image_size < 16 or self.image_size % 2:
            raise ValueError(
                f"image_size must be even and at least 16 (the teacher is at half resolution), got {self.image_size}"
            )
        if self.num_views < 1:
            raise ValueError(f"num_views must be at least 1, got {self.num_views}")
        if not 10.0 < self.fov_deg < 150.0:
            raise ValueError(f"fov_deg must be between 10 and 150 degrees, got {self.fov_deg}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (tuple, list)):
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"{f.name} must be a (low, high) range with low <= high, got {value}")
                setattr(self, f.name, tuple(value))
        if self.room_width[0] < 3.0 or self.room_depth[0] < 3.0:
            raise ValueError("rooms narrower than 3 m leave no space for the camera path; raise room_width/room_depth")


# ----------------------------------------------------------------------------------------------------
# Class embeddings and the stand-in teacher


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
        "version": np.asarray(FORMAT_VERSION, dtype=np.int64),
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
    if version != FORMAT_VERSION:
        raise ValueError(f"teacher feature file version {version} is not supported (this code reads {FORMAT_VERSION})")
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


# ----------------------------------------------------------------------------------------------------
# Room description


@dataclass(frozen=True)
class Material:
    """A procedural texture: ``kind`` one of ``MATERIAL_KINDS``, colours in sRGB [0, 1]."""

    kind: str
    color1: tuple[float, float, float]
    color2: tuple[float, float, float]
    scale: float = 1.0
    """Pattern frequency per metre (wood rings, tiles, stripes, planks, noise)."""
    angle: float = 0.0
    """Rotation of the pattern in its surface plane, radians."""


MATERIAL_KINDS = ("plain", "wood", "planks", "tiles", "stripes", "fabric", "emissive")


@dataclass(frozen=True)
class Primitive:
    """A box or a vertical cylinder, in world coordinates."""

    kind: str
    """"box" or "cylinder"."""
    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    """Box: half extents along its own x, y, z; cylinder: (radius, radius, half height)."""
    yaw: float
    """Rotation about the vertical axis, radians (boxes)."""
    material: int
    label: int
    group: int
    """Index of the object (in ``Room.objects``) the primitive belongs to."""


@dataclass(frozen=True)
class CameraPath:
    """A smooth closed camera path: an ellipse around the room centre with varying height, looking at
    a point that swings around the opposite side of the room. ``phi`` is the angle on the ellipse."""

    radii: tuple[float, float]
    phase: float
    direction: float
    height: tuple[float, float, float]
    """Mean, amplitude and phase of the camera height ``mean + amp * sin(2 phi + phase)``."""
    target_scale: float
    target_height: tuple[float, float, float]
    """Mean, amplitude and phase of the look-at height ``mean + amp * sin(3 phi + phase)``."""
    swing: tuple[float, float]
    """Amplitude and phase of the look-at angle swing ``amp * sin(phi + phase)``."""

    def centres_and_targets(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera centres and look-at points ``[n, 3]`` at path parameters ``t`` in [0, 1)."""
        phi = self.phase + self.direction * 2.0 * math.pi * np.asarray(t, dtype=np.float64)
        rx, ry = self.radii
        h_mean, h_amp, h_phase = self.height
        centres = np.stack([rx * np.cos(phi), ry * np.sin(phi), h_mean + h_amp * np.sin(2 * phi + h_phase)], -1)
        look = phi + math.pi + self.swing[0] * np.sin(phi + self.swing[1])
        t_mean, t_amp, t_phase = self.target_height
        k = self.target_scale
        targets = np.stack(
            [k * rx * np.cos(look), k * ry * np.sin(look), t_mean + t_amp * np.sin(3 * phi + t_phase)], -1
        )
        return centres, targets


@dataclass
class Room:
    """The primitives of one procedural room and what is needed to light and film it."""

    size: tuple[float, float, float]
    """Width (x), depth (y) and height (z) in metres."""
    primitives: list[Primitive]
    materials: list[Material]
    shell_materials: tuple[int, int, int, int, int, int]
    """Materials of the walls at x = -W/2, x = +W/2, y = -D/2, y = +D/2, then floor and ceiling."""
    lights: list[tuple[float, float, float, float]]
    """Point lights: x, y, z, intensity."""
    footprints: list[tuple[float, float, float, float, float]]
    """Floor-standing objects (cx, cy, half x, half y, yaw), for contact shadows on the floor."""
    objects: list[str]
    """Name of each object (group) of primitives."""
    camera_path: CameraPath
    seed: int
    _packed: Optional["_Packed"] = field(default=None, init=False, repr=False, compare=False)

    def packed(self) -> "_Packed":
        if self._packed is None:
            self._packed = _Packed.build(self)
        return self._packed


@dataclass
class ViewCameras:
    """Pinhole cameras of the views: OpenCV camera-to-world poses and one shared intrinsic matrix."""

    camera_to_worlds: np.ndarray
    """[N, 4, 4] float64 OpenCV camera-to-world."""
    intrinsics: np.ndarray
    """[3, 3] float64 pinhole intrinsics in pixels."""
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.camera_to_worlds)


# ----------------------------------------------------------------------------------------------------
# Furniture: each builder returns parts in the object's frame (origin on the floor at the footprint
# centre, back towards -y, front towards +y) and the footprint half extents.


@dataclass
class _Part:
    kind: str
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    material: int
    label: int


@dataclass
class _Piece:
    name: str
    parts: list[_Part]
    half_xy: tuple[float, float]


_WOODS = ((0.55, 0.37, 0.21), (0.40, 0.25, 0.14), (0.72, 0.56, 0.38), (0.30, 0.19, 0.12), (0.80, 0.67, 0.50))
_FABRICS = (
    (0.30, 0.38, 0.55),
    (0.55, 0.55, 0.52),
    (0.24, 0.40, 0.31),
    (0.62, 0.28, 0.25),
    (0.76, 0.68, 0.54),
    (0.28, 0.28, 0.31),
    (0.45, 0.33, 0.52),
    (0.70, 0.55, 0.30),
    (0.20, 0.48, 0.50),
)
_PAINTS = (
    (0.93, 0.93, 0.91),
    (0.15, 0.15, 0.16),
    (0.70, 0.20, 0.18),
    (0.25, 0.45, 0.65),
    (0.85, 0.75, 0.30),
    (0.45, 0.60, 0.45),
)
_WALL_PAINTS = (
    (0.90, 0.88, 0.82),
    (0.80, 0.85, 0.90),
    (0.92, 0.84, 0.74),
    (0.78, 0.86, 0.78),
    (0.94, 0.93, 0.90),
    (0.88, 0.80, 0.82),
)


class _Builder:
    """Random materials and furniture of one room."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.materials: list[Material] = []

    def jitter(self, color, amount: float = 0.06) -> tuple[float, float, float]:
        c = np.clip(np.asarray(color) * (1.0 + self.rng.uniform(-amount, amount, 3)), 0.02, 0.98)
        return tuple(float(x) for x in c)

    def add(self, kind: str, color1, color2=None, scale: float = 1.0, angle: float = 0.0) -> int:
        color2 = color1 if color2 is None else color2
        self.materials.append(
            Material(kind, tuple(map(float, color1)), tuple(map(float, color2)), float(scale), float(angle))
        )
        return len(self.materials) - 1

    def pick(self, palette):
        return palette[int(self.rng.integers(len(palette)))]

    def wood(self) -> int:
        base = self.jitter(self.pick(_WOODS))
        return self.add("wood", base, tuple(0.72 * c for c in base), scale=float(self.rng.uniform(12, 30)))

    def fabric(self) -> int:
        base = self.jitter(self.pick(_FABRICS), 0.12)
        return self.add("fabric", base, tuple(0.8 * c for c in base), scale=float(self.rng.uniform(3, 8)))

    def paint(self, palette=_PAINTS) -> int:
        return self.add("plain", self.jitter(self.pick(palette), 0.05), scale=4.0)

    def frame(self) -> int:
        return self.wood() if self.rng.random() < 0.6 else self.paint()

    def pattern(self) -> int:
        rng = self.rng
        c1, c2 = self.jitter(self.pick(_FABRICS), 0.2), self.jitter(self.pick(_PAINTS + _FABRICS), 0.2)
        kind = ("stripes", "tiles", "fabric")[int(rng.integers(3))]
        return self.add(
            kind, c1, c2, scale=float(rng.uniform(4, 12)), angle=float(rng.choice([0.0, math.pi / 2, math.pi / 4]))
        )

    # -- pieces ---------------------------------------------------------------------------------------

    def legs(self, parts, hx, hy, inset, height, mat, label, round_legs: bool, r: float) -> None:
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (hx - inset), sy * (hy - inset)
                if round_legs:
                    parts.append(_Part("cylinder", (x, y, height / 2), (r, r, height / 2), mat, label))
                else:
                    parts.append(_Part("box", (x, y, height / 2), (r, r, height / 2), mat, label))

    def chair(self) -> _Piece:
        rng = self.rng
        hx, hy = rng.uniform(0.2, 0.25), rng.uniform(0.2, 0.25)
        seat_z, seat_t = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.06)
        frame = self.frame()
        seat = self.fabric() if rng.random() < 0.5 else frame
        parts: list[_Part] = []
        self.legs(parts, hx, hy, 0.025, seat_z - seat_t, frame, CHAIR, rng.random() < 0.5, 0.018)
        parts.append(_Part("box", (0, 0, seat_z - seat_t / 2), (hx, hy, seat_t / 2), seat, CHAIR))
        back_h, back_t = rng.uniform(0.35, 0.5), 0.025
        top = seat_z + back_h
        if rng.random() < 0.5:  # solid back panel
            parts.append(
                _Part("box", (0, -hy + back_t, seat_z + back_h * 0.6), (hx, back_t, back_h * 0.4), seat, CHAIR)
            )
            for sx in (-1, 1):
                parts.append(
                    _Part(
                        "box",
                        (sx * (hx - 0.02), -hy + back_t, seat_z + back_h / 2),
                        (0.02, back_t, back_h / 2),
                        frame,
                        CHAIR,
                    )
                )
        else:  # posts and slats
            for sx in (-1, 1):
                parts.append(
                    _Part(
                        "box",
                        (sx * (hx - 0.02), -hy + back_t, seat_z + back_h / 2),
                        (0.02, back_t, back_h / 2),
                        frame,
                        CHAIR,
                    )
                )
            for k in range(int(rng.integers(2, 4))):
                z = top - 0.04 - k * 0.11
                parts.append(_Part("box", (0, -hy + back_t, z), (hx - 0.02, 0.015, 0.035), frame, CHAIR))
        if rng.random() < 0.3:  # armrests
            for sx in (-1, 1):
                parts.append(
                    _Part("box", (sx * (hx - 0.02), 0.0, seat_z + 0.22), (0.02, hy - 0.02, 0.015), frame, CHAIR)
                )
                parts.append(
                    _Part("box", (sx * (hx - 0.02), hy - 0.05, seat_z + 0.11), (0.015, 0.015, 0.11), frame, CHAIR)
                )
        return _Piece("chair", parts, (hx, hy))

    def table(self, kind: str) -> _Piece:
        rng = self.rng
        top_mat = self.wood() if rng.random() < 0.75 else self.paint()
        leg_mat = top_mat if rng.random() < 0.6 else self.paint()
        parts: list[_Part] = []
        if kind == "round":
            r, h = rng.uniform(0.45, 0.6), rng.uniform(0.72, 0.77)
            parts.append(_Part("cylinder", (0, 0, h - 0.02), (r, r, 0.02), top_mat, TABLE))
            parts.append(_Part("cylinder", (0, 0, h / 2), (0.05, 0.05, h / 2 - 0.02), leg_mat, TABLE))
            parts.append(_Part("cylinder", (0, 0, 0.02), (0.28, 0.28, 0.02), leg_mat, TABLE))
            return _Piece("round table", parts, (r, r))
        if kind == "coffee":
            hx, hy, h = rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.32), rng.uniform(0.38, 0.45)
        else:
            hx, hy, h = rng.uniform(0.5, 0.9), rng.uniform(0.38, 0.5), rng.uniform(0.72, 0.77)
        t = rng.uniform(0.025, 0.05)
        parts.append(_Part("box", (0, 0, h - t / 2), (hx, hy, t / 2), top_mat, TABLE))
        self.legs(parts, hx, hy, 0.05, h - t, leg_mat, TABLE, rng.random() < 0.5, 0.025)
        if rng.random() < 0.6:  # apron under the top
            parts.append(_Part("box", (0, 0, h - t - 0.04), (hx - 0.06, hy - 0.06, 0.04), leg_mat, TABLE))
        if kind == "coffee" and rng.random() < 0.5:  # lower shelf
            parts.append(_Part("box", (0, 0, 0.12), (hx - 0.06, hy - 0.06, 0.012), leg_mat, TABLE))
        return _Piece(f"{kind} table", parts, (hx, hy))

    def sofa(self) -> _Piece:
        rng = self.rng
        hx, hy = rng.uniform(0.8, 1.2), rng.uniform(0.42, 0.48)
        mat, cushion, feet = self.fabric(), self.fabric() if rng.random() < 0.3 else None, self.wood()
        cushion = mat if cushion is None else cushion
        arm_w, foot, seat_z, back_t = rng.uniform(0.12, 0.22), 0.08, rng.uniform(0.38, 0.44), rng.uniform(0.16, 0.22)
        arm_h, back_h = rng.uniform(0.55, 0.68), rng.uniform(0.78, 0.9)
        parts = [
            _Part("cylinder", (sx * (hx - 0.06), sy * (hy - 0.06), foot / 2), (0.025, 0.025, foot / 2), feet, SOFA)
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]
        base_top = seat_z - 0.1
        parts.append(_Part("box", (0, 0, (foot + base_top) / 2), (hx, hy, (base_top - foot) / 2), mat, SOFA))
        for sx in (-1, 1):
            parts.append(
                _Part(
                    "box",
                    (sx * (hx - arm_w / 2), 0, (foot + arm_h) / 2),
                    (arm_w / 2, hy, (arm_h - foot) / 2),
                    mat,
                    SOFA,
                )
            )
        parts.append(
            _Part(
                "box",
                (0, -hy + back_t / 2, (base_top + back_h) / 2),
                (hx - arm_w, back_t / 2, (back_h - base_top) / 2),
                mat,
                SOFA,
            )
        )
        n = int(rng.integers(2, 4))
        inner = hx - arm_w
        width = 2 * inner / n
        for k in range(n):
            x = -inner + width * (k + 0.5)
            parts.append(
                _Part("box", (x, back_t / 2, seat_z - 0.05), (width / 2 - 0.008, hy - back_t / 2, 0.05), cushion, SOFA)
            )
            if rng.random() < 0.6:  # back cushion
                parts.append(
                    _Part("box", (x, -hy + back_t + 0.06, seat_z + 0.2), (width / 2 - 0.01, 0.06, 0.18), cushion, SOFA)
                )
        return _Piece("sofa", parts, (hx, hy))

    def bed(self) -> _Piece:
        rng = self.rng
        hx = rng.choice([rng.uniform(0.5, 0.6), rng.uniform(0.7, 0.95)])
        hy = rng.uniform(1.0, 1.08)
        frame, sheet, blanket, pillow = (
            self.wood(),
            self.paint(((0.95, 0.95, 0.93), (0.90, 0.92, 0.96))),
            self.pattern(),
            self.paint(((0.97, 0.97, 0.95), (0.92, 0.88, 0.84))),
        )
        leg, frame_h, mattress_h = rng.uniform(0.08, 0.14), 0.22, rng.uniform(0.18, 0.25)
        parts: list[_Part] = []
        self.legs(parts, hx, hy, 0.05, leg, frame, BED, False, 0.03)
        parts.append(_Part("box", (0, 0, leg + frame_h / 2), (hx, hy, frame_h / 2), frame, BED))
        mattress_top = leg + frame_h + mattress_h
        parts.append(
            _Part("box", (0, 0.02, mattress_top - mattress_h / 2), (hx - 0.03, hy - 0.05, mattress_h / 2), sheet, BED)
        )
        head_h = rng.uniform(0.9, 1.2)
        parts.append(_Part("box", (0, -hy + 0.03, head_h / 2), (hx + 0.02, 0.03, head_h / 2), frame, BED))
        if rng.random() < 0.4:
            parts.append(
                _Part(
                    "box",
                    (0, hy - 0.03, (mattress_top - 0.05) / 2),
                    (hx + 0.02, 0.03, (mattress_top - 0.05) / 2),
                    frame,
                    BED,
                )
            )
        blanket_start = -hy + rng.uniform(0.55, 0.8)
        y0, y1 = blanket_start, hy - 0.02
        parts.append(
            _Part("box", (0, (y0 + y1) / 2, mattress_top - 0.05), (hx - 0.01, (y1 - y0) / 2, 0.075), blanket, BED)
        )
        n = 1 if hx < 0.7 else 2
        for k in range(n):
            x = 0.0 if n == 1 else (k - 0.5) * hx
            parts.append(
                _Part("box", (x, -hy + 0.3, mattress_top + 0.06), (min(0.3, hx - 0.08), 0.18, 0.07), pillow, BED)
            )
        return _Piece("bed", parts, (hx, hy))

    def shelf(self) -> _Piece:
        rng = self.rng
        hx, hy, h = rng.uniform(0.3, 0.6), rng.uniform(0.14, 0.2), rng.uniform(1.4, 2.0)
        mat, t = self.frame(), 0.02
        parts = [_Part("box", (sx * (hx - t / 2), 0, h / 2), (t / 2, hy, h / 2), mat, OTHER) for sx in (-1, 1)] + [
            _Part("box", (0, -hy + 0.005, h / 2), (hx, 0.005, h / 2), mat, OTHER)
        ]
        n = int(rng.integers(3, 6))
        levels = np.linspace(0.06, h - t / 2, n + 1)
        for z in levels:
            parts.append(_Part("box", (0, 0, z), (hx - t, hy, t / 2), mat, OTHER))
        book_mats = [self.paint(_PAINTS + _FABRICS) for _ in range(4)]
        for lo, hi in zip(levels[:-1], levels[1:]):
            gap = hi - lo - t
            x = -hx + t
            while True:
                width = rng.uniform(0.02, 0.05)
                if x + width > hx - t - 0.01:
                    break
                if rng.random() < 0.15:  # a gap
                    x += rng.uniform(0.05, 0.15)
                    continue
                bh = gap * rng.uniform(0.55, 0.9)
                bd = hy * rng.uniform(0.7, 0.95)
                parts.append(
                    _Part(
                        "box",
                        (x + width / 2, -hy + 0.01 + bd, lo + t / 2 + bh / 2),
                        (width / 2 - 0.001, bd, bh / 2),
                        book_mats[int(rng.integers(4))],
                        OTHER,
                    )
                )
                x += width
        return _Piece("bookshelf", parts, (hx, hy))

    def cabinet(self) -> _Piece:
        rng = self.rng
        hx, hy, h = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.28), rng.uniform(0.55, 1.1)
        body, front = self.frame(), self.frame()
        parts = [_Part("box", (0, 0, h / 2 + 0.03), (hx, hy, h / 2 - 0.03), body, OTHER)]
        n = max(1, int(round((h - 0.06) / 0.25)))
        step = (h - 0.08) / n
        for k in range(n):
            z = 0.06 + step * (k + 0.5)
            parts.append(_Part("box", (0, hy + 0.008, z), (hx - 0.025, 0.008, step / 2 - 0.012), front, OTHER))
            parts.append(
                _Part(
                    "box",
                    (0, hy + 0.025, z),
                    (0.04, 0.01, 0.01),
                    self.paint(((0.7, 0.7, 0.72), (0.2, 0.2, 0.2))),
                    OTHER,
                )
            )
        if rng.random() < 0.5:  # a vase on top
            r = rng.uniform(0.05, 0.09)
            parts.append(
                _Part("cylinder", (rng.uniform(-hx + r, hx - r), 0, h + 0.12), (r, r, 0.12), self.paint(), OTHER)
            )
        return _Piece("cabinet", parts, (hx, hy))

    def lamp(self) -> _Piece:
        rng = self.rng
        h, r = rng.uniform(1.4, 1.7), rng.uniform(0.16, 0.22)
        metal, shade = self.paint(((0.15, 0.15, 0.16), (0.75, 0.72, 0.65))), self.paint(
            ((0.96, 0.92, 0.80), (0.92, 0.85, 0.70), (0.85, 0.90, 0.92))
        )
        parts = [
            _Part("cylinder", (0, 0, 0.015), (0.15, 0.15, 0.015), metal, OTHER),
            _Part("cylinder", (0, 0, h / 2), (0.014, 0.014, h / 2), metal, OTHER),
            _Part("cylinder", (0, 0, h + 0.1), (r, r, 0.15), shade, OTHER),
        ]
        return _Piece("floor lamp", parts, (r, r))

    def plant(self) -> _Piece:
        rng = self.rng
        r, pot_h = rng.uniform(0.14, 0.2), rng.uniform(0.25, 0.4)
        pot = self.add("plain", self.jitter((0.70, 0.40, 0.25), 0.15), scale=4)
        leaf = self.add("fabric", self.jitter((0.22, 0.45, 0.20), 0.2), self.jitter((0.12, 0.30, 0.12), 0.2), scale=10)
        parts = [_Part("cylinder", (0, 0, pot_h / 2), (r, r, pot_h / 2), pot, OTHER)]
        z, rr = pot_h, r * 1.8
        for _ in range(int(rng.integers(2, 4))):
            th = rng.uniform(0.18, 0.3)
            parts.append(_Part("cylinder", (0, 0, z + th / 2), (rr, rr, th / 2), leaf, OTHER))
            z, rr = z + th * 0.85, rr * 0.7
        return _Piece("plant", parts, (r * 1.8, r * 1.8))

    def tv(self) -> _Piece:
        rng = self.rng
        hx, h = rng.uniform(0.5, 0.8), rng.uniform(0.4, 0.55)
        stand = self.frame()
        screen = self.add("plain", (0.05, 0.05, 0.06), scale=2)
        hy = 0.22
        parts = [
            _Part("box", (0, 0, h / 2), (hx, hy, h / 2), stand, OTHER),
            _Part("box", (0, -0.05, h + 0.02), (0.15, 0.08, 0.02), screen, OTHER),
        ]
        sx, sz = min(hx - 0.05, rng.uniform(0.45, 0.65)), rng.uniform(0.27, 0.37)
        parts.append(_Part("box", (0, -0.05, h + 0.06 + sz), (sx, 0.025, sz), screen, OTHER))
        return _Piece("tv", parts, (hx, hy))

    def nightstand(self) -> _Piece:
        rng = self.rng
        hx, hy, h = rng.uniform(0.2, 0.25), rng.uniform(0.18, 0.22), rng.uniform(0.45, 0.6)
        body, knob = self.frame(), self.paint(((0.7, 0.7, 0.72), (0.2, 0.2, 0.2)))
        parts = [
            _Part("box", (0, 0, h / 2 + 0.02), (hx, hy, h / 2 - 0.02), body, OTHER),
            _Part("box", (0, hy + 0.006, h - 0.1), (hx - 0.02, 0.006, 0.07), body, OTHER),
            _Part("box", (0, hy + 0.02, h - 0.1), (0.03, 0.01, 0.01), knob, OTHER),
        ]
        if rng.random() < 0.6:  # a table lamp
            shade = self.paint(((0.96, 0.92, 0.80), (0.85, 0.90, 0.92)))
            parts += [
                _Part("cylinder", (0, -0.03, h + 0.12), (0.05, 0.05, 0.12), knob, OTHER),
                _Part("cylinder", (0, -0.03, h + 0.32), (0.12, 0.12, 0.09), shade, OTHER),
            ]
        return _Piece("nightstand", parts, (hx, hy))

    def other(self) -> _Piece:
        kind = int(self.rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1]))
        return (self.shelf, self.cabinet, self.plant, self.lamp, self.tv)[kind]()


# ----------------------------------------------------------------------------------------------------
# Layout


def _yaw_facing(wall: int) -> float:
    """Yaw that puts an object's back (-y) against wall 0..3 (x = -W/2, x = +W/2, y = -D/2, y = +D/2)."""
    return (-math.pi / 2, math.pi / 2, 0.0, math.pi)[wall]


class _Layout:
    """Non-overlapping placement of pieces on the floor (rotated footprints, as AABBs)."""

    def __init__(self, rng: np.random.Generator, width: float, depth: float) -> None:
        self.rng, self.W, self.D = rng, width, depth
        self.boxes: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1

    @staticmethod
    def aabb(x, y, hx, hy, yaw):
        c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
        ex, ey = c * hx + s * hy, s * hx + c * hy
        return x - ex, y - ey, x + ex, y + ey

    def free(self, box, margin: float = 0.0) -> bool:
        """Whether ``box`` lies in the room and stays ``margin`` away from every placed footprint."""
        x0, y0, x1, y1 = box
        if x0 < -self.W / 2 - 1e-6 or x1 > self.W / 2 + 1e-6 or y0 < -self.D / 2 - 1e-6 or y1 > self.D / 2 + 1e-6:
            return False
        x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
        return all(x1 <= b[0] or b[2] <= x0 or y1 <= b[1] or b[3] <= y0 for b in self.boxes)

    def try_place(self, x, y, hx, hy, yaw, margin=0.05) -> bool:
        box = self.aabb(x, y, hx, hy, yaw)
        if not self.free(box, margin):
            return False
        self.boxes.append(box)
        return True

    def against_wall(self, hx, hy, gap=0.02, walls=(0, 1, 2, 3), tries=40, along=None):
        """Place a footprint with its back against one of ``walls``; returns (x, y, yaw, wall) or None."""
        rng = self.rng
        for _ in range(tries):
            wall = int(rng.choice(walls))
            yaw = _yaw_facing(wall)
            length = self.D if wall < 2 else self.W
            room_half = self.W / 2 if wall < 2 else self.D / 2
            if 2 * hx + 0.1 > length:
                continue
            t = rng.uniform(-length / 2 + hx + 0.05, length / 2 - hx - 0.05) if along is None else along(length, hx)
            n = -room_half + hy + gap  # distance along the wall normal, from the centre
            x, y = ((n if wall == 0 else -n), t) if wall < 2 else (t, (n if wall == 2 else -n))
            if self.try_place(x, y, hx, hy, yaw):
                return x, y, yaw, wall
        return None

    def anywhere(self, hx, hy, yaw, wall_margin, tries=60):
        rng = self.rng
        x0, y0, x1, y1 = self.aabb(0, 0, hx, hy, yaw)
        lo_x, hi_x = -self.W / 2 + wall_margin - x0, self.W / 2 - wall_margin - x1
        lo_y, hi_y = -self.D / 2 + wall_margin - y0, self.D / 2 - wall_margin - y1
        if lo_x > hi_x or lo_y > hi_y:
            return None
        for _ in range(tries):
            x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
            if self.try_place(x, y, hx, hy, yaw, margin=0.1):
                return x, y
        return None


def _place(piece: _Piece, x: float, y: float, yaw: float, group: int) -> list[Primitive]:
    c, s = math.cos(yaw), math.sin(yaw)
    return [
        Primitive(
            p.kind,
            (x + c * p.center[0] - s * p.center[1], y + s * p.center[0] + c * p.center[1], p.center[2]),
            tuple(float(v) for v in p.half),
            yaw,
            p.material,
            p.label,
            group,
        )
        for p in piece.parts
    ]


def _distance_to_primitive(points: np.ndarray, prim: Primitive) -> np.ndarray:
    rel = points - np.asarray(prim.center)
    if prim.kind == "box":
        c, s = math.cos(prim.yaw), math.sin(prim.yaw)
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], -1)
        return np.linalg.norm(np.maximum(np.abs(local) - np.asarray(prim.half_size), 0.0), axis=1)
    radial = np.maximum(np.hypot(rel[:, 0], rel[:, 1]) - prim.half_size[0], 0.0)
    return np.hypot(radial, np.maximum(np.abs(rel[:, 2]) - prim.half_size[2], 0.0))


_CAMERA_CLEARANCE = 0.3  # metres between any camera on the path and any primitive


def generate_room(config: RoomConfig) -> Room:
    """A random furnished room for ``config.seed`` (layout retried until the camera path is clear)."""
    for attempt in range(20):
        room = _generate_room(config, np.random.default_rng([config.seed, 0, attempt]))
        centres, _ = room.camera_path.centres_and_targets(np.linspace(0.0, 1.0, 256, endpoint=False))
        if all(_distance_to_primitive(centres, p).min() > _CAMERA_CLEARANCE for p in room.primitives):
            return room
    raise RuntimeError(
        f"could not lay out seed {config.seed} with a clear camera path; raise camera_wall_margin or room sizes"
    )


def _generate_room(config: RoomConfig, rng: np.random.Generator) -> Room:
    size = tuple(float(rng.uniform(*r)) for r in (config.room_width, config.room_depth, config.room_height))
    counts = {
        name: int(rng.integers(lo, hi + 1))
        for name, (lo, hi) in (
            ("chair", config.num_chairs),
            ("table", config.num_tables),
            ("sofa", config.num_sofas),
            ("bed", config.num_beds),
            ("other", config.num_others),
        )
    }
    maker = _RoomMaker(rng, *size)
    shell = maker.shell()
    maker.door()
    maker.beds(counts["bed"])
    sofas = maker.sofas(counts["sofa"])
    tables = counts["table"] - maker.coffee_tables(sofas, counts["table"])
    chairs = maker.dining_tables(tables, counts["chair"])
    maker.wall_chairs(chairs)
    maker.others(counts["other"])
    maker.rug()
    maker.pictures(int(rng.integers(1, 4)))
    lights = maker.ceiling_lights()
    W, D, _ = size
    rx, ry = max(0.4, W / 2 - config.camera_wall_margin), max(0.4, D / 2 - config.camera_wall_margin)
    h_lo, h_hi = config.camera_height
    path = CameraPath(
        radii=(rx, ry),
        phase=float(rng.uniform(0, 2 * math.pi)),
        direction=float(rng.choice([-1.0, 1.0])),
        height=((h_lo + h_hi) / 2, (h_hi - h_lo) / 2, float(rng.uniform(0, 2 * math.pi))),
        target_scale=float(rng.uniform(0.2, 0.5)),
        target_height=(
            float(rng.uniform(0.85, 1.05)),
            float(rng.uniform(0.3, 0.5)),
            float(rng.uniform(0, 2 * math.pi)),
        ),
        swing=(float(rng.uniform(0.15, 0.45)), float(rng.uniform(0, 2 * math.pi))),
    )
    return Room(size, maker.prims, maker.b.materials, shell, lights, maker.footprints, maker.objects, path, config.seed)


def _local_to_world(x: float, y: float, yaw: float, lx: float, ly: float) -> tuple[float, float]:
    c, s = math.cos(yaw), math.sin(yaw)
    return x + c * lx - s * ly, y + s * lx + c * ly


class _RoomMaker:
    """Furnishes one room, in a fixed order: door, beds, sofas, tables and chairs, others, decor."""

    def __init__(self, rng: np.random.Generator, width: float, depth: float, height: float) -> None:
        self.rng, self.W, self.D, self.H = rng, width, depth, height
        self.b = _Builder(rng)
        self.layout = _Layout(rng, width, depth)
        self.prims: list[Primitive] = []
        self.objects: list[str] = []
        self.footprints: list[tuple[float, float, float, float, float]] = []
        self.rug_spot: Optional[tuple[float, float, float, float, float]] = None

    def add(self, piece: _Piece, x: float, y: float, yaw: float, floor_standing: bool = True) -> None:
        self.prims.extend(_place(piece, x, y, yaw, len(self.objects)))
        self.objects.append(piece.name)
        if floor_standing:
            self.footprints.append((x, y, piece.half_xy[0], piece.half_xy[1], yaw))

    def shell(self) -> tuple[int, int, int, int, int, int]:
        """Materials of the four walls (one may be an accent wall), the floor and the ceiling."""
        rng, b = self.rng, self.b
        floor_kind = ("planks", "planks", "tiles", "fabric")[int(rng.integers(4))]
        if floor_kind == "planks":
            base = b.jitter(b.pick(_WOODS), 0.1)
            floor = b.add(
                "planks",
                base,
                tuple(0.75 * c for c in base),
                scale=float(rng.uniform(5, 8)),
                angle=float(rng.choice([0, math.pi / 2])),
            )
        elif floor_kind == "tiles":
            c1 = b.jitter(b.pick(((0.85, 0.84, 0.80), (0.55, 0.52, 0.50), (0.80, 0.72, 0.62))), 0.08)
            c2 = c1 if rng.random() < 0.5 else tuple(0.7 * c for c in c1)
            floor = b.add("tiles", c1, c2, scale=float(rng.uniform(1.6, 3.5)))
        else:  # carpet
            c1 = b.jitter(b.pick(_FABRICS), 0.1)
            floor = b.add("fabric", c1, tuple(0.85 * c for c in c1), scale=float(rng.uniform(6, 12)))
        wall_color = b.jitter(b.pick(_WALL_PAINTS), 0.03)
        wall = b.add("plain", wall_color, scale=3.0)
        accent_kind = str(rng.choice(["plain", "stripes", "stripes"]))
        accent = (
            wall
            if rng.random() < 0.4
            else b.add(
                accent_kind,
                b.jitter(b.pick(_WALL_PAINTS + _FABRICS[:4]), 0.05),
                wall_color,
                scale=float(rng.uniform(3, 8)),
            )
        )
        ceiling = b.add("plain", (0.95, 0.95, 0.94), scale=2.0)
        walls = [wall] * 4
        walls[int(rng.integers(4))] = accent
        return (*walls, floor, ceiling)

    def door(self) -> None:
        """A door on a random wall; its footprint reserves the floor in front of it."""
        rng, b = self.rng, self.b
        wall = int(rng.integers(4))
        length = self.D if wall < 2 else self.W
        along = float(rng.uniform(-length / 2 + 0.7, length / 2 - 0.7))
        panel = b.wood() if rng.random() < 0.5 else b.paint(((0.95, 0.95, 0.93), (0.55, 0.40, 0.30)))
        door = _Piece(
            "door",
            [
                _Part("box", (0, -0.49, 1.03), (0.45, 0.02, 1.03), panel, OTHER),
                _Part("box", (0.36, -0.45, 1.0), (0.05, 0.02, 0.015), b.paint(((0.75, 0.72, 0.60),)), OTHER),
            ],
            (0.45, 0.5),
        )
        spot = self.layout.against_wall(0.45, 0.5, gap=0.0, walls=(wall,), along=lambda length, hx: along)
        if spot is not None:
            self.add(door, *spot[:3], floor_standing=False)

    def beds(self, count: int) -> None:
        """Beds with the headboard against a wall, and nightstands beside them when there is room."""
        for _ in range(count):
            bed = self.b.bed()
            spot = self.layout.against_wall(*bed.half_xy)
            if spot is None:
                continue
            x, y, yaw, _ = spot
            self.add(bed, x, y, yaw)
            for side in (-1, 1):
                if self.rng.random() < 0.6:
                    stand = self.b.nightstand()
                    lx = side * (bed.half_xy[0] + 0.05 + stand.half_xy[0])
                    sx, sy = _local_to_world(x, y, yaw, lx, -bed.half_xy[1] + stand.half_xy[1] + 0.02)
                    if self.layout.try_place(sx, sy, *stand.half_xy, yaw, margin=0.02):
                        self.add(stand, sx, sy, yaw)

    def sofas(self, count: int) -> list[tuple[float, float, float, _Piece]]:
        placed = []
        for _ in range(count):
            sofa = self.b.sofa()
            spot = self.layout.against_wall(*sofa.half_xy)
            if spot is not None:
                self.add(sofa, *spot[:3])
                placed.append((*spot[:3], sofa))
        return placed

    def coffee_tables(self, sofas, budget: int) -> int:
        """A coffee table (and a rug) in front of each sofa while the table budget lasts; returns how many."""
        used = 0
        for x, y, yaw, sofa in sofas[:budget]:
            table = self.b.table("coffee")
            tx, ty = _local_to_world(x, y, yaw, 0.0, sofa.half_xy[1] + 0.45 + table.half_xy[1])
            if self.layout.try_place(tx, ty, *table.half_xy, yaw, margin=0.05):
                self.add(table, tx, ty, yaw)
                used += 1
                self.rug_spot = (tx, ty, table.half_xy[0] + 0.5, table.half_xy[1] + 0.4, yaw)
        return used

    def dining_tables(self, count: int, chairs: int) -> int:
        """Free-standing tables with chairs around them, facing the table; returns the chairs left."""
        rng = self.rng
        for _ in range(count):
            table = self.b.table("round" if rng.random() < 0.3 else "dining")
            yaw = float(rng.choice([0.0, math.pi / 2]))
            hx, hy = table.half_xy
            spot = self.layout.anywhere(hx + 0.55, hy + 0.55, yaw, wall_margin=0.1)  # a ring for the chairs
            if spot is None:
                continue
            self.layout.boxes.pop()  # the ring is for the chairs: only the table stays reserved
            self.layout.try_place(*spot, hx, hy, yaw, margin=0.0)
            self.add(table, *spot, yaw)
            if self.rug_spot is None and rng.random() < 0.6:
                self.rug_spot = (*spot, hx + 0.6, hy + 0.6, yaw)
            chair = self.b.chair()  # one design per table
            depth = chair.half_xy[1]
            # (x, y) of the seat in table coordinates and the chair's yaw there, front (+y) to the table
            sides = (
                [(0.0, -1.0, 0.0), (0.0, 1.0, math.pi)]
                if hx < 0.65
                else [(-0.5, -1.0, 0.0), (0.5, -1.0, 0.0), (-0.5, 1.0, math.pi), (0.5, 1.0, math.pi)]
            )
            sides += [(-1.0, 0.0, -math.pi / 2), (1.0, 0.0, math.pi / 2)]
            for k in rng.permutation(len(sides)):
                if chairs == 0:
                    break
                fx, fy, face = sides[k]
                pull = rng.uniform(-0.03, 0.2)  # how far the chair is pulled out
                lx, ly = (fx * hx, fy * (hy + depth + pull)) if fy else (fx * (hx + depth + pull), 0.0)
                cx, cy = _local_to_world(*spot, yaw, lx, ly)
                cyaw = yaw + face + rng.uniform(-0.25, 0.25)
                if self.layout.try_place(cx, cy, *chair.half_xy, cyaw, margin=0.0):
                    self.add(chair, cx, cy, cyaw)
                    chairs -= 1
        return chairs

    def wall_chairs(self, count: int) -> None:
        for _ in range(count):
            chair = self.b.chair()
            spot = self.layout.against_wall(*chair.half_xy, gap=0.05)
            if spot is not None:
                self.add(chair, *spot[:3])

    def others(self, count: int) -> None:
        """Shelves, cabinets and TVs along the walls; lamps and plants in the corners."""
        for _ in range(count):
            piece = self.b.other()
            if piece.name in ("floor lamp", "plant"):
                corner = float(self.rng.choice([-1, 1]))
                spot = self.layout.against_wall(
                    *piece.half_xy, gap=0.08, along=lambda length, hx: corner * (length / 2 - hx - 0.08)
                )
            else:
                spot = self.layout.against_wall(*piece.half_xy)
            if spot is not None:
                self.add(piece, *spot[:3])

    def rug(self) -> None:
        if self.rug_spot is not None:
            x, y, hx, hy, yaw = self.rug_spot
            rug = _Piece("rug", [_Part("box", (0, 0, 0.005), (hx, hy, 0.005), self.b.pattern(), OTHER)], (hx, hy))
            self.add(rug, x, y, yaw, floor_standing=False)

    def pictures(self, count: int) -> None:
        """Framed pictures at eye height, on wall stretches with nothing standing below them."""
        rng, b = self.rng, self.b
        for _ in range(count):
            hx, hz = rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.35)
            for _ in range(20):
                wall = int(rng.integers(4))
                length, half = (self.D, self.W / 2) if wall < 2 else (self.W, self.D / 2)
                along = rng.uniform(-length / 2 + hx + 0.2, length / 2 - hx - 0.2)

                def on_wall(offset: float) -> tuple[float, float]:  # a point `offset` in front of the wall
                    n = half - offset
                    return ((-n if wall == 0 else n), along) if wall < 2 else (along, (-n if wall == 2 else n))

                below = self.layout.aabb(*on_wall(0.3), hx, 0.3, _yaw_facing(wall))
                if not self.layout.free(below):
                    continue
                self.layout.boxes.append(below)
                z = rng.uniform(1.35, min(1.8, self.H - hz - 0.3))
                frame, canvas = b.frame(), b.pattern()
                picture = _Piece(
                    "picture",
                    [
                        _Part("box", (0, 0, z), (hx, 0.015, hz), frame, OTHER),
                        _Part("box", (0, 0.006, z), (hx - 0.03, 0.015, hz - 0.03), canvas, OTHER),
                    ],
                    (hx, 0.015),
                )
                self.add(picture, *on_wall(0.015), _yaw_facing(wall), floor_standing=False)
                break

    def ceiling_lights(self) -> list[tuple[float, float, float, float]]:
        """One or two emissive ceiling fixtures, each with a point light just below it."""
        rng, W, D, H = self.rng, self.W, self.D, self.H
        glow = self.b.add("emissive", (1.0, 0.98, 0.92))
        if max(W, D) < 5.5:
            spots = [(0.0, 0.0)]
        else:
            spots = [(-W / 4, 0.0), (W / 4, 0.0)] if W > D else [(0.0, -D / 4), (0.0, D / 4)]
        lights = []
        for lx, ly in spots:
            lx, ly = lx + rng.uniform(-0.3, 0.3), ly + rng.uniform(-0.3, 0.3)
            fixture = _Piece(
                "ceiling light", [_Part("cylinder", (0, 0, H - 0.02), (0.2, 0.2, 0.02), glow, OTHER)], (0.2, 0.2)
            )
            self.add(fixture, lx, ly, 0.0, floor_standing=False)
            lights.append((lx, ly, H - 0.12, 1.0 / len(spots)))
        return lights


def make_cameras(room: Room, config: RoomConfig) -> ViewCameras:
    """``config.num_views`` cameras evenly spaced along the room's closed path, looking into the room."""
    t = np.arange(config.num_views) / config.num_views
    centres, targets = room.camera_path.centres_and_targets(t)
    forward = targets - centres
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    c2w = np.zeros((config.num_views, 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3], c2w[:, 3, 3] = right, down, forward, centres, 1.0
    size = config.image_size
    focal = size / 2 / math.tan(math.radians(config.fov_deg) / 2)
    intrinsics = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return ViewCameras(c2w, intrinsics, size, size)


# ----------------------------------------------------------------------------------------------------
# Ray casting


@dataclass
class _Group:
    lo: Tensor  # [3] world AABB
    hi: Tensor
    boxes: Tensor  # primitive indices
    cylinders: Tensor


@dataclass
class _Packed:
    """The room as float32 tensors, for the ray caster."""

    size: Tensor  # [3]
    center: Tensor  # [P, 3]
    half: Tensor  # [P, 3]
    cos: Tensor  # [P]
    sin: Tensor
    is_box: Tensor  # [P] bool
    material: Tensor  # [P] long
    label: Tensor
    materials: Tensor  # [M, 9]: kind, color1, color2, scale, angle
    shell_material: Tensor  # [6]
    lights: Tensor  # [L, 4]
    footprints: Tensor  # [F, 5]
    groups: list[_Group]
    group_lo: Tensor  # [G, 3]
    group_hi: Tensor
    group_corners: Tensor  # [G, 8, 3]
    casters: list[int]  # groups that cast shadows (not the light fixtures)

    @staticmethod
    def build(room: Room) -> "_Packed":
        f32 = dict(dtype=torch.float32)
        prims = room.primitives
        center = torch.tensor([p.center for p in prims], **f32).reshape(-1, 3)
        half = torch.tensor([p.half_size for p in prims], **f32).reshape(-1, 3)
        yaw = torch.tensor([p.yaw for p in prims], dtype=torch.float64)
        is_box = torch.tensor([p.kind == "box" for p in prims], dtype=torch.bool)
        groups, los, his = [], [], []
        for g in range(len(room.objects)):
            idx = [i for i, p in enumerate(prims) if p.group == g]
            corners = []
            for i in idx:
                p = prims[i]
                ex = (
                    abs(math.cos(p.yaw)) * p.half_size[0] + abs(math.sin(p.yaw)) * p.half_size[1]
                    if p.kind == "box"
                    else p.half_size[0]
                )
                ey = (
                    abs(math.sin(p.yaw)) * p.half_size[0] + abs(math.cos(p.yaw)) * p.half_size[1]
                    if p.kind == "box"
                    else p.half_size[0]
                )
                e = np.array([ex, ey, p.half_size[2]])
                corners += [np.asarray(p.center) - e, np.asarray(p.center) + e]
            corners = np.stack(corners)
            lo, hi = torch.tensor(corners.min(0) - 1e-3, **f32), torch.tensor(corners.max(0) + 1e-3, **f32)
            ids = torch.tensor(idx, dtype=torch.long)
            groups.append(_Group(lo, hi, ids[is_box[ids]], ids[~is_box[ids]]))
            los.append(lo)
            his.append(hi)
        lo_all, hi_all = torch.stack(los).reshape(-1, 3), torch.stack(his).reshape(-1, 3)
        pick = torch.tensor([[(k >> a) & 1 for a in range(3)] for k in range(8)], dtype=torch.bool)
        corners = torch.where(pick, hi_all[:, None, :], lo_all[:, None, :])
        materials = torch.tensor(
            [[MATERIAL_KINDS.index(m.kind), *m.color1, *m.color2, m.scale, m.angle] for m in room.materials], **f32
        )
        return _Packed(
            size=torch.tensor(room.size, **f32),
            center=center,
            half=half,
            cos=torch.cos(yaw).float(),
            sin=torch.sin(yaw).float(),
            is_box=is_box,
            material=torch.tensor([p.material for p in prims], dtype=torch.long),
            label=torch.tensor([p.label for p in prims], dtype=torch.long),
            materials=materials,
            shell_material=torch.tensor(room.shell_materials, dtype=torch.long),
            lights=torch.tensor(room.lights, **f32).reshape(-1, 4),
            footprints=torch.tensor(room.footprints, **f32).reshape(-1, 5),
            groups=groups,
            group_lo=lo_all,
            group_hi=hi_all,
            group_corners=corners,
            casters=[g for g, name in enumerate(room.objects) if name != "ceiling light"],
        )


def _safe_inverse(d: Tensor) -> Tensor:
    return 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)


def _box_hits(pk: _Packed, ids: Tensor, o: Tensor, d: Tensor) -> Tensor:
    """Entry distance of rays ``[n, 3]`` into boxes ``ids`` (inf on a miss): ``[n, len(ids)]``."""
    c, h = pk.center[ids], pk.half[ids]
    cs, sn = pk.cos[ids], pk.sin[ids]
    rel = o[:, None, :] - c  # [n, b, 3]
    ox = cs * rel[..., 0] + sn * rel[..., 1]
    oy = -sn * rel[..., 0] + cs * rel[..., 1]
    dx = cs * d[:, None, 0] + sn * d[:, None, 1]
    dy = -sn * d[:, None, 0] + cs * d[:, None, 1]
    dz = d[:, None, 2].expand_as(dx)
    t_near = torch.full_like(ox, -math.inf)
    t_far = torch.full_like(ox, math.inf)
    for oa, da, ha in ((ox, dx, h[:, 0]), (oy, dy, h[:, 1]), (rel[..., 2], dz, h[:, 2])):
        inv = _safe_inverse(da)
        t1, t2 = (-ha - oa) * inv, (ha - oa) * inv
        t_near = torch.maximum(t_near, torch.minimum(t1, t2))
        t_far = torch.minimum(t_far, torch.maximum(t1, t2))
    return torch.where((t_far >= t_near) & (t_near > _EPS), t_near, torch.full_like(t_near, math.inf))


def _cylinder_hits(pk: _Packed, ids: Tensor, o: Tensor, d: Tensor) -> Tensor:
    """Entry distance of rays ``[n, 3]`` into vertical cylinders ``ids`` (inf on a miss): ``[n, len(ids)]``."""
    c, r, hh = pk.center[ids], pk.half[ids, 0], pk.half[ids, 2]
    rel = o[:, None, :] - c
    x, y, z = rel[..., 0], rel[..., 1], rel[..., 2]
    dx, dy, dz = d[:, None, 0], d[:, None, 1], d[:, None, 2]
    a = (dx * dx + dy * dy).clamp(min=1e-12)
    b = x * dx + y * dy
    disc = b * b - a * (x * x + y * y - r * r)
    t_side = (-b - disc.clamp(min=0).sqrt()) / a
    inf = torch.full_like(t_side, math.inf)
    side_ok = (disc >= 0) & (t_side > _EPS) & ((z + t_side * dz).abs() <= hh)
    best = torch.where(side_ok, t_side, inf)
    inv = _safe_inverse(dz)
    for plane in (hh, -hh):
        t_cap = (plane - z) * inv
        xs, ys = x + t_cap * dx, y + t_cap * dy
        ok = (t_cap > _EPS) & (xs * xs + ys * ys <= r * r)
        best = torch.minimum(best, torch.where(ok, t_cap, inf))
    return best


def _trace(
    pk: _Packed, o: Tensor, d: Tensor, t_max: Tensor, screen: Tensor, rects: Tensor, groups: list[int]
) -> tuple[Tensor, Tensor]:
    """Nearest primitive hit closer than ``t_max`` for rays ``o [n|1, 3]``, ``d [n, 3]``: (t, primitive or -1).

    Culling: ray k can only hit group g if its 2D coordinate ``screen[k]`` (a projection about the
    rays' common centre: the camera, or a light) lies in the group's projected rectangle
    ``rects[g] = (u0, v0, u1, v1)``; survivors are tested against the group's box, then its parts.
    """
    n = d.shape[0]
    best_t, best_p = t_max.clone(), torch.full((n,), -1, dtype=torch.long)
    if not groups:
        return best_t, best_p
    r = rects[groups]
    inside = (screen[None, :, 0] >= r[:, None, 0]) & (screen[None, :, 0] <= r[:, None, 2])
    inside &= (screen[None, :, 1] >= r[:, None, 1]) & (screen[None, :, 1] <= r[:, None, 3])  # [G, n]
    per_ray_origin = o.shape[0] > 1
    for row, g in enumerate(groups):
        rays = inside[row].nonzero()[:, 0]
        if rays.numel() == 0:
            continue
        oo, dd = (o[rays] if per_ray_origin else o), d[rays]
        inv = _safe_inverse(dd)
        t1, t2 = (pk.group_lo[g] - oo) * inv, (pk.group_hi[g] - oo) * inv
        t_near, t_far = torch.minimum(t1, t2).amax(-1), torch.maximum(t1, t2).amin(-1)
        keep = ((t_far >= t_near) & (t_far > _EPS) & (t_near < best_t[rays])).nonzero()[:, 0]
        if keep.numel() == 0:
            continue
        rays, dd = rays[keep], dd[keep]
        oo = oo[keep] if per_ray_origin else oo.expand_as(dd)
        t_cur, p_cur = best_t[rays], best_p[rays]
        group = pk.groups[g]
        for ids, hits in ((group.boxes, _box_hits), (group.cylinders, _cylinder_hits)):
            if ids.numel() == 0:
                continue
            t, k = hits(pk, ids, oo, dd).min(1)
            closer = t < t_cur
            t_cur = torch.where(closer, t, t_cur)
            p_cur = torch.where(closer, ids[k], p_cur)
        best_t[rays], best_p[rays] = t_cur, p_cur
    return best_t, best_p


def _camera_rects(pk: _Packed, c2w: np.ndarray, intrinsics: np.ndarray) -> Tensor:
    """Pixel rectangles ``[G, 4]`` that contain each group's box in the image (unbounded if behind)."""
    R = torch.from_numpy(c2w[:3, :3].astype(np.float32))
    rel = pk.group_corners - torch.from_numpy(c2w[:3, 3].astype(np.float32))
    cam = (rel[..., :, None] * R).sum(-2)  # R^T (x - c): [G, 8, 3]
    z = cam[..., 2].clamp(min=1e-6)
    u = cam[..., 0] / z * float(intrinsics[0, 0]) + float(intrinsics[0, 2])
    v = cam[..., 1] / z * float(intrinsics[1, 1]) + float(intrinsics[1, 2])
    rects = torch.stack([u.amin(-1) - 1, v.amin(-1) - 1, u.amax(-1) + 1, v.amax(-1) + 1], -1)
    behind = (cam[..., 2] <= 1e-3).any(-1)
    return torch.where(behind[:, None], torch.tensor([-math.inf, -math.inf, math.inf, math.inf]), rects)


def _light_coords(light: Tensor, points: Tensor) -> Tensor:
    """Central projection of points ``[..., 3]`` below a light onto a horizontal plane: ``[..., 2]``."""
    return (points[..., :2] - light[:2]) / (light[2] - points[..., 2:]).clamp(min=1e-6)


def _light_rects(pk: _Packed, light: Tensor) -> Tensor:
    """Rectangles ``[G, 4]`` of each group's box in :func:`_light_coords` (unbounded if not below it)."""
    s = _light_coords(light, pk.group_corners)
    rects = torch.cat([s.amin(-2), s.amax(-2)], -1)
    above = (pk.group_corners[..., 2] >= light[2] - 1e-3).any(-1)
    return torch.where(above[:, None], torch.tensor([-math.inf, -math.inf, math.inf, math.inf]), rects)


def _shell_exit(pk: _Packed, o: Tensor, d: Tensor) -> Tensor:
    """Distance from inside the room to its walls, floor or ceiling along ``d``."""
    lo = torch.stack([-pk.size[0] / 2, -pk.size[1] / 2, torch.zeros(())])
    hi = torch.stack([pk.size[0] / 2, pk.size[1] / 2, pk.size[2]])
    inv = _safe_inverse(d)
    return torch.maximum((lo - o) * inv, (hi - o) * inv).amin(-1)


def _surface(pk: _Packed, p: Tensor, prim: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Normal, texture coordinates (metres), material, label and a texture key at hit points ``p``."""
    n = p.shape[0]
    normal, uv = torch.zeros(n, 3), torch.zeros(n, 2)
    material, label, key = (
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
    )
    W, D, H = pk.size
    shell = (prim < 0).nonzero()[:, 0]
    if shell.numel():
        q = p[shell]
        dist = torch.stack(
            [q[:, 0] + W / 2, W / 2 - q[:, 0], q[:, 1] + D / 2, D / 2 - q[:, 1], q[:, 2], H - q[:, 2]], -1
        )
        face = dist.argmin(-1)
        axis = torch.tensor([0, 0, 1, 1, 2, 2])[face]
        sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])[face]
        normal[shell] = F.one_hot(axis, 3).float() * sign[:, None]
        u = torch.where(axis == 0, q[:, 1], q[:, 0])
        v = torch.where(axis == 2, q[:, 1], q[:, 2])
        uv[shell] = torch.stack([u, v], -1)
        material[shell] = pk.shell_material[face]
        label[shell] = torch.tensor([WALL, WALL, WALL, WALL, FLOOR, CEILING])[face]
        key[shell] = face
    hit = (prim >= 0).nonzero()[:, 0]
    if hit.numel():
        ids = prim[hit]
        c, h, cs, sn = pk.center[ids], pk.half[ids], pk.cos[ids], pk.sin[ids]
        rel = p[hit] - c
        lx, ly, lz = cs * rel[:, 0] + sn * rel[:, 1], -sn * rel[:, 0] + cs * rel[:, 1], rel[:, 2]
        local = torch.stack([lx, ly, lz], -1)
        # boxes: the face whose slab the point is on; u runs along the longer tangent side (wood grain)
        axis = (local.abs() / h.clamp(min=1e-6)).argmax(-1)
        n_local = F.one_hot(axis, 3).float() * torch.sign(local.gather(1, axis[:, None]))
        corner = local + h
        tangents = torch.tensor([[1, 2], [0, 2], [0, 1]])[axis]
        ta, tb = corner.gather(1, tangents[:, :1])[:, 0], corner.gather(1, tangents[:, 1:])[:, 0]
        ha, hb = h.gather(1, tangents[:, :1])[:, 0], h.gather(1, tangents[:, 1:])[:, 0]
        box_uv = torch.where((ha >= hb)[:, None], torch.stack([ta, tb], -1), torch.stack([tb, ta], -1))
        # cylinders: side (u along the axis, v around it) or caps
        radial = torch.sqrt(lx * lx + ly * ly).clamp(min=1e-9)
        cap = (lz.abs() / h[:, 2].clamp(min=1e-6)) > radial / h[:, 0]
        side_n = torch.stack([lx / radial, ly / radial, torch.zeros_like(lx)], -1)
        cap_n = torch.stack([torch.zeros_like(lx), torch.zeros_like(lx), torch.sign(lz)], -1)
        cyl_n = torch.where(cap[:, None], cap_n, side_n)
        cyl_uv = torch.where(
            cap[:, None], torch.stack([lx, ly], -1), torch.stack([lz + h[:, 2], torch.atan2(ly, lx) * h[:, 0]], -1)
        )
        box = pk.is_box[ids]
        nl = torch.where(box[:, None], n_local, cyl_n)
        normal[hit] = torch.stack([cs * nl[:, 0] - sn * nl[:, 1], sn * nl[:, 0] + cs * nl[:, 1], nl[:, 2]], -1)
        uv[hit] = torch.where(box[:, None], box_uv, cyl_uv)
        material[hit], label[hit] = pk.material[ids], pk.label[ids]
        key[hit] = 6 + ids * 8 + torch.where(box, axis, cap.long() + 3)
    return normal, uv, material, label, key


# ----------------------------------------------------------------------------------------------------
# Procedural textures and shading


def _hash(ix: Tensor, iy: Tensor, key: Tensor) -> Tensor:
    """Integer lattice hash to [0, 1) (bit-exact, no overflow in int64)."""
    h = (ix * 374761393 + iy * 668265263 + key * 1442695041) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).float() / 16777216.0


def _value_noise(u: Tensor, v: Tensor, key: Tensor) -> Tensor:
    fu, fv = torch.floor(u), torch.floor(v)
    iu, iv = fu.long(), fv.long()
    su, sv = u - fu, v - fv
    su, sv = su * su * (3 - 2 * su), sv * sv * (3 - 2 * sv)
    n00, n10 = _hash(iu, iv, key), _hash(iu + 1, iv, key)
    n01, n11 = _hash(iu, iv + 1, key), _hash(iu + 1, iv + 1, key)
    return (n00 + (n10 - n00) * su) * (1 - sv) + (n01 + (n11 - n01) * su) * sv


def _fbm(u: Tensor, v: Tensor, key: Tensor, octaves: int = 3) -> Tensor:
    total, amp, norm = torch.zeros_like(u), 1.0, 0.0
    for k in range(octaves):
        total += amp * _value_noise(u * 2**k, v * 2**k, key * 7 + k)
        norm += amp
        amp *= 0.5
    return total / norm


def _lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    return a + (b - a) * t[:, None]


def _albedo(params: Tensor, uv: Tensor, key: Tensor) -> Tensor:
    """sRGB albedo ``[n, 3]`` of procedural materials ``params [n, 9]`` at ``uv [n, 2]`` (metres)."""
    kind, c1, c2, scale, angle = params[:, 0].long(), params[:, 1:4], params[:, 4:7], params[:, 7], params[:, 8]
    ca, sa = torch.cos(angle), torch.sin(angle)
    u = ca * uv[:, 0] + sa * uv[:, 1]
    v = -sa * uv[:, 0] + ca * uv[:, 1]
    out = c1.clone()
    for k, name in enumerate(MATERIAL_KINDS):
        m = (kind == k).nonzero()[:, 0]
        if m.numel() == 0:
            continue
        mu, mv, mk, s, a, b = u[m], v[m], key[m], scale[m], c1[m], c2[m]
        if name == "plain":
            col = a * (0.94 + 0.1 * _fbm(mu * s, mv * s, mk))[:, None]
        elif name == "wood":
            warp = _fbm(mu * 1.5, mv * 6.0, mk)
            rings = 0.5 + 0.5 * torch.sin(2 * math.pi * (mv * s + 2.0 * warp))
            streaks = _value_noise(mu * 4.0, mv * 120.0, mk + 1)
            col = _lerp(a, b, rings**3) * (0.9 + 0.15 * streaks)[:, None]
        elif name == "planks":
            width = 1.0 / s  # plank width along v, staggered joints along u
            row = torch.floor(mv / width)
            ri = row.long()
            length = 1.2
            shift = _hash(ri, torch.zeros_like(ri), mk) * length
            col_i = torch.floor((mu + shift) / length).long()
            tone = 0.85 + 0.3 * _hash(ri, col_i, mk + 3)
            warp = _fbm(mu * 1.2, mv * 8.0, mk)
            rings = 0.5 + 0.5 * torch.sin(2 * math.pi * (mv * 25.0 + 1.5 * warp + 7 * _hash(ri, col_i, mk + 5)))
            col = _lerp(a, b, rings**3) * tone[:, None] * (0.92 + 0.12 * _value_noise(mu * 3, mv * 90, mk + 9))[:, None]
            fv = mv / width - row
            fu = (mu + shift) / length - torch.floor((mu + shift) / length)
            seam = (torch.minimum(fv, 1 - fv) * width < 0.003) | (torch.minimum(fu, 1 - fu) * length < 0.003)
            col = torch.where(seam[:, None], col * 0.55, col)
        elif name == "tiles":
            size = 1.0 / s
            iu, iv = torch.floor(mu / size), torch.floor(mv / size)
            odd = (iu + iv) % 2 == 1
            col = torch.where(odd[:, None], b, a) * (0.93 + 0.1 * _hash(iu.long(), iv.long(), mk))[:, None]
            fu, fv = mu / size - iu, mv / size - iv
            grout = torch.minimum(torch.minimum(fu, 1 - fu), torch.minimum(fv, 1 - fv)) * size < 0.004
            col = torch.where(grout[:, None], torch.full_like(col, 0.62), col)
        elif name == "stripes":
            phase = mu * s - torch.floor(mu * s)
            t = ((phase - 0.25).abs() < 0.25).float()
            col = _lerp(a, b, t) * (0.95 + 0.08 * _fbm(mu * 6, mv * 6, mk))[:, None]
        elif name == "fabric":
            t = _fbm(mu * s, mv * s, mk, octaves=4)
            col = _lerp(a, b, t) * (0.95 + 0.08 * _value_noise(mu * 150, mv * 150, mk + 2))[:, None]
        else:  # emissive
            col = a
        out[m] = col
    return out.clamp(0.0, 1.0)


_AMBIENT = 0.3
_LIGHT_POWER = 1.5
_LIGHT_FALLOFF = 2.5  # metres at which a light's irradiance halves


def _shade(pk: _Packed, p: Tensor, normal: Tensor, albedo: Tensor, emissive: Tensor, shadows: bool) -> Tensor:
    """Linear radiance ``[n, 3]``: hemispherical ambient + Lambertian point lights, with AO darkening."""
    W, D, H = pk.size
    irradiance = _AMBIENT * (0.85 + 0.15 * normal[:, 2])  # sky-like: up-facing surfaces see more
    for lx, ly, lz, power in pk.lights.tolist():
        to_light = torch.tensor([lx, ly, lz]) - p
        dist = to_light.norm(dim=-1).clamp(min=1e-3)
        ndl = ((normal * to_light).sum(-1) / dist).clamp(min=0)
        contrib = _LIGHT_POWER * power * ndl / (1 + (dist / _LIGHT_FALLOFF) ** 2)
        if shadows:  # rays from the lit points below the light towards it
            light = torch.tensor([lx, ly, lz])
            lit = ((ndl > 0) & (p[:, 2] < lz - 1e-3)).nonzero()[:, 0]
            origin = p[lit] + 2e-3 * normal[lit]
            direction = to_light[lit] / dist[lit, None]
            screen = _light_coords(light, origin)
            _, blocker = _trace(pk, origin, direction, dist[lit] - 0.05, screen, _light_rects(pk, light), pk.casters)
            visible = torch.ones_like(dist)
            visible[lit] = (blocker < 0).float()
            contrib = contrib * visible
        irradiance = irradiance + contrib
    # ambient occlusion: room edges and corners, the floor line, furniture footprints
    planes = torch.stack([p[:, 0] + W / 2, W / 2 - p[:, 0], p[:, 1] + D / 2, D / 2 - p[:, 1], p[:, 2], H - p[:, 2]], -1)
    on_plane = planes < 2e-3
    edge = torch.where(on_plane, torch.full_like(planes, math.inf), planes).amin(-1)
    ao = 1 - 0.3 * torch.exp(-edge / 0.25)
    ao = ao * (1 - 0.25 * torch.exp(-p[:, 2] / 0.08) * (1 - normal[:, 2].abs()))  # sides near the floor
    low = (p[:, 2] < 0.02).nonzero()[:, 0]  # the floor and rugs: contact shadows of the furniture
    if pk.footprints.numel() and low.numel():
        fp = pk.footprints
        rel = p[low, None, :2] - fp[:, :2]
        cs, sn = torch.cos(fp[:, 4]), torch.sin(fp[:, 4])
        lx = (cs * rel[..., 0] + sn * rel[..., 1]).abs() - fp[:, 2]
        ly = (-sn * rel[..., 0] + cs * rel[..., 1]).abs() - fp[:, 3]
        outside = torch.sqrt(lx.clamp(min=0) ** 2 + ly.clamp(min=0) ** 2)
        ao[low] = ao[low] * (1 - 0.45 * torch.exp(-outside / 0.12)).prod(-1)
    linear = (albedo**2.2) * (irradiance * ao)[:, None]
    return torch.where(emissive[:, None], albedo**2.2, linear)


def _render_view(
    pk: _Packed, c2w: np.ndarray, intrinsics: np.ndarray, width: int, height: int, shadows: bool
) -> dict[str, np.ndarray]:
    fx, fy, cx, cy = (float(intrinsics[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    vs, us = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    x = ((us.reshape(-1) + 0.5) - cx) / fx
    y = ((vs.reshape(-1) + 0.5) - cy) / fy
    R = torch.from_numpy(c2w[:3, :3].astype(np.float32))
    origin = torch.from_numpy(c2w[:3, 3].astype(np.float32))[None]
    direction = x[:, None] * R[:, 0] + y[:, None] * R[:, 1] + R[:, 2]  # unnormalized: z-depth == t
    screen = torch.stack([us.reshape(-1) + 0.5, vs.reshape(-1) + 0.5], -1)
    rects = _camera_rects(pk, c2w, intrinsics)
    t, prim = _trace(
        pk, origin, direction, _shell_exit(pk, origin, direction), screen, rects, list(range(len(pk.groups)))
    )
    p = origin + t[:, None] * direction
    normal, uv, material, label, key = _surface(pk, p, prim)
    params = pk.materials[material]
    albedo = _albedo(params, uv, key)
    emissive = params[:, 0] == MATERIAL_KINDS.index("emissive")
    radiance = _shade(pk, p, normal, albedo, emissive, shadows)
    srgb = (radiance.clamp(0, 1) ** (1 / 2.2) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return {
        "rgb": srgb.reshape(height, width, 3).numpy(),
        "depth": t.reshape(height, width).numpy(),
        "labels": label.to(torch.uint8).reshape(height, width).numpy(),
    }


def render_views(room: Room, cameras: ViewCameras, shadows: bool = True) -> dict[str, np.ndarray]:
    """Render every camera: ``rgb`` uint8 [N, H, W, 3], ``depth`` float32 [N, H, W] (metres, z-depth),
    ``labels`` uint8 [N, H, W] (class ids)."""
    pk = room.packed()
    views = [
        _render_view(pk, c2w, cameras.intrinsics, cameras.width, cameras.height, shadows)
        for c2w in cameras.camera_to_worlds
    ]
    return {key: np.stack([v[key] for v in views]) for key in ("rgb", "depth", "labels")}


# ----------------------------------------------------------------------------------------------------
# Writing a scene


_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: bit-identical .npz files


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed``, but without the time stamps that make files differ run to run."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())


_SUBDIRS = ("images", "depth", "labels", "features")


def _prepare_output(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another output path")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        meta = out_dir / "transforms.json"
        try:
            previous = "ff3r_synthetic" in json.loads(meta.read_text())
        except (OSError, ValueError):
            previous = False
        if not previous:
            raise FileExistsError(
                f"{out_dir} is not empty and is not a synthetic scene written by ff3r_ns (no transforms.json "
                f"with an 'ff3r_synthetic' entry); refusing to overwrite it. Pass an empty or new folder."
            )
        for sub in _SUBDIRS:  # a previous synthetic scene: drop its frames so none is left stale
            for file in (out_dir / sub).glob("frame_*"):
                file.unlink()
        meta.unlink()
    for sub in _SUBDIRS:
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def write_scene(out_dir: str | Path, config: RoomConfig, progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Generate, render and write a nerfstudio scene (layout in the module docstring).

    Refuses (``FileExistsError``) to write into a non-empty folder that is not a previous synthetic
    scene; a previous one is replaced. ``progress(done, total)`` is called after each view.
    Returns the path of ``transforms.json``.
    """
    out_dir = Path(out_dir)
    _prepare_output(out_dir)
    room = generate_room(config)
    cameras = make_cameras(room, config)
    pk = room.packed()
    frames = []
    for i, c2w in enumerate(cameras.camera_to_worlds):
        view = _render_view(pk, c2w, cameras.intrinsics, cameras.width, cameras.height, config.shadows)
        name = f"frame_{i:05d}"
        Image.fromarray(view["rgb"]).save(out_dir / "images" / f"{name}.png")
        depth_mm = np.clip(np.round(view["depth"].astype(np.float64) * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(depth_mm).save(out_dir / "depth" / f"{name}.png")
        Image.fromarray(view["labels"]).save(out_dir / "labels" / f"{name}.png")
        _save_npz(out_dir / "features" / f"{name}.npz", teacher_view(view["labels"], config.seed, i, config))
        gl = opencv_to_opengl_c2w(torch.from_numpy(c2w)).numpy()
        frames.append(
            {
                "file_path": f"images/{name}.png",
                "transform_matrix": gl.tolist(),
                "depth_file_path": f"depth/{name}.png",
                "semantic_file_path": f"labels/{name}.png",
                "feature_file_path": f"features/{name}.npz",
            }
        )
        if progress is not None:
            progress(i + 1, len(cameras))
    K = cameras.intrinsics
    meta = {
        "camera_model": "OPENCV",
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "w": cameras.width,
        "h": cameras.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "depth_unit_scale_factor": 0.001,
        "ff3r_synthetic": {
            "seed": config.seed,
            "classes": list(CLASS_NAMES),
            "version": FORMAT_VERSION,
            "config": asdict(config),
        },
        "frames": frames,
    }
    path = out_dir / "transforms.json"
    path.write_text(json.dumps(meta, indent=2))
    return path
