"""What a procedural room is made of: materials, primitives (boxes and vertical cylinders), the loop camera path."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from ff3r_ns.data.synthetic.config import RoomConfig

CAMERA_CLEARANCE = 0.3  # metres between any camera on the path and any primitive


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
    video_plan: Optional[tuple[RoomConfig, np.ndarray]] = field(default=None, compare=False, repr=False)
    """The video cameras ``[n, 4, 4]`` planned when this layout was accepted, and the config they were planned
    for: ``make_cameras`` reuses them for an equal config instead of planning the same path again."""


def distance_to_primitive(points: np.ndarray, prim: Primitive) -> np.ndarray:
    """Euclidean distance ``[n]`` from points ``[n, 3]`` to the primitive (0 inside it)."""
    rel = points - np.asarray(prim.center)
    if prim.kind == "box":
        c, s = math.cos(prim.yaw), math.sin(prim.yaw)
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], -1)
        return np.linalg.norm(np.maximum(np.abs(local) - np.asarray(prim.half_size), 0.0), axis=1)
    radial = np.maximum(np.hypot(rel[:, 0], rel[:, 1]) - prim.half_size[0], 0.0)
    return np.hypot(radial, np.maximum(np.abs(rel[:, 2]) - prim.half_size[2], 0.0))
