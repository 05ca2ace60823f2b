"""The configuration of one synthetic room: everything that defines it, so the same config gives the same files."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Union

FORMAT_VERSION = 2
"""Version of the scenes that :func:`~ff3r_ns.data.synthetic.write_scene` writes (``ff3r_synthetic.version``
in ``transforms.json``). 1: the closed loop only, ``config.fov_deg`` one number; 2: ``config.trajectory``, the
video options and a field-of-view range. The files of the frames did not change (the teacher records keep
their own version, :data:`~ff3r_ns.data.synthetic.teacher.TEACHER_VERSION`)."""


@dataclass
class RoomConfig:
    """Everything that defines one synthetic scene; the same config gives bit-identical files."""

    seed: int = 0
    """Random seed of the room layout, materials, camera path and teacher degradation."""
    num_views: int = 64
    """Number of views (frames) along the camera path; 64-128 make a video room of a few metres."""
    image_size: int = 448
    """Width and height of the (square) images in pixels; even, at least 16."""
    trajectory: Literal["video", "loop"] = "video"
    """How the room is filmed. "video": like a handheld capture, a walk-through or a partial orbit around
    a piece of furniture, a few centimetres and degrees per frame, forward-looking with head bob, varied
    speed and pauses (training rooms). "loop": the views evenly spaced on one closed ellipse around the
    room looking inward (360 degrees over ``num_views``: neighbours far apart, a hard evaluation)."""
    fov_deg: Union[float, tuple[float, float]] = (50.0, 90.0)
    """Range of the horizontal (and vertical) field of view in degrees, drawn once per room; one number
    fixes it."""
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
    """Range of the camera height above the floor in metres (along the loop; per room for a video)."""
    camera_wall_margin: float = 1.1
    """Distance in metres between the loop camera path (an ellipse) and the walls."""
    camera_speed: tuple[float, float] = (0.015, 0.04)
    """Range of a video's walking speed in metres per frame, drawn per room (0.45-1.2 m/s at 30 fps);
    the walker slows down in turns and pauses now and then."""
    camera_clearance: float = 0.5
    """Smallest horizontal distance in metres between a video camera and any wall or piece of furniture."""
    orbit_probability: float = 0.35
    """Probability that a video room is a partial orbit around a piece of furniture, not a walk-through."""
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
        if isinstance(self.fov_deg, (int, float)):
            self.fov_deg = (float(self.fov_deg), float(self.fov_deg))
        if self.trajectory not in ("video", "loop"):
            raise ValueError(f'trajectory must be "video" or "loop", got {self.trajectory!r}')
        if not 0.0 <= self.orbit_probability <= 1.0:
            raise ValueError(f"orbit_probability must be in [0, 1], got {self.orbit_probability}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (tuple, list)):
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"{f.name} must be a (low, high) range with low <= high, got {value}")
                setattr(self, f.name, tuple(value))
        if not (10.0 < self.fov_deg[0] and self.fov_deg[1] < 150.0):
            raise ValueError(f"fov_deg must lie between 10 and 150 degrees, got {self.fov_deg}")
        if not (0.0 < self.camera_speed[0] and self.camera_speed[1] <= 0.05):
            raise ValueError(f"camera_speed must lie in (0, 0.05] metres per frame, got {self.camera_speed}")
        if not 0.2 <= self.camera_clearance <= 1.0:
            raise ValueError(f"camera_clearance must be between 0.2 and 1 metre, got {self.camera_clearance}")
        if self.room_width[0] < 3.0 or self.room_depth[0] < 3.0:
            raise ValueError("rooms narrower than 3 m leave no space for the camera path; raise room_width/room_depth")
