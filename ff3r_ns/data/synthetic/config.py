"""The configuration of one synthetic room: everything that defines it, so the same config gives the same files."""

from __future__ import annotations

from dataclasses import dataclass, fields

FORMAT_VERSION = 1
"""Version of the files that :func:`~ff3r_ns.data.synthetic.write_scene` writes (transforms.json, teacher records)."""


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
