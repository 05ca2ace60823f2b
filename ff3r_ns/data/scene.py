"""The one description of a scene that every reader returns and every consumer reads.

Conventions (one place, so that no reader invents its own):
- poses are OpenCV camera-to-world 4x4 matrices (x right, y down, z forward), in the scene's own
  units; adapters convert to nerfstudio's OpenGL convention with ``ff3r_ns.network.cameras``;
- intrinsics are 3x3 pinhole matrices in pixels of the image as stored on disk (after EXIF rotation);
- depth maps are metric (or SfM-scaled) z-depth along the optical axis, 0 where unknown; depth and
  label maps cover the image's field of view (at any resolution) unless ``map_intrinsics`` says which
  camera they were recorded with (then ``ff3r_ns.data.sensor_maps`` brings them into the image's frame);
- label maps hold class ids 1..8 (``ff3r_ns.data.classes``), or a source's own ids and a ``label_table``;
- frames are in capture order (natural sort of file names, or the order of the scene file).
Poses, intrinsics and depth are kept for evaluation and as a geometry teacher, never as model input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ff3r_ns.data.sensor_maps import LabelTable


@dataclass
class SceneData:
    """A scene as read from disk: image files plus whatever geometry and labels the source has."""

    name: str
    """Short name of the scene (its folder name)."""
    root: Path
    """Folder the scene was read from."""
    image_paths: list[Path]
    """One image file per frame, in capture order."""
    image_sizes: np.ndarray
    """[N, 2] int (height, width) of each image as stored, after EXIF rotation."""
    camera_to_worlds: Optional[np.ndarray] = None
    """[N, 4, 4] float OpenCV camera-to-world poses, or None for an unposed source."""
    intrinsics: Optional[np.ndarray] = None
    """[N, 3, 3] float pinhole intrinsics in pixels, or None when unknown."""
    depth_paths: Optional[list[Path]] = None
    """One depth file per frame (16-bit PNG or .npy), or None."""
    depth_scale: float = 1.0
    """Multiply the stored depth values by this to get the scene's units (0.001 for millimetres)."""
    label_paths: Optional[list[Path]] = None
    """One per-pixel class-id PNG per frame (ids 1..8, 0 = nothing; source ids with ``label_table``), or None."""
    label_table: Optional[LabelTable] = None
    """Maps the source ids stored in ``label_paths`` to class ids (ScanNet's raw categories); None: they are class ids."""
    map_intrinsics: Optional[np.ndarray] = None
    """[N, 3, 3] pinhole intrinsics of the depth and label maps, in pixels of the maps as stored, where they
    were recorded by another camera than the image (same centre and axes, e.g. ScanNet's depth sensor);
    None: the maps span the image's field of view."""
    feature_paths: Optional[list[Path]] = None
    """One 2D semantic-teacher feature file per frame, or None. Synthetic rooms store a compact factored
    form (.npz); ``ff3r_ns.data.synthetic.load_teacher_features`` turns it into [h/2, w/2, 512]."""
    frame_ids: Optional[list[str]] = None
    """Source-specific frame identifiers (file stems by default)."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Frames that were listed or found but could not be used, with the reason."""

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        self.image_sizes = np.asarray(self.image_sizes, dtype=np.int64).reshape(n, 2)
        if self.frame_ids is None:
            self.frame_ids = [p.stem for p in self.image_paths]
        for name in ("camera_to_worlds", "intrinsics", "map_intrinsics"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape[0] != n:
                    raise ValueError(f"{name} has {value.shape[0]} entries for {n} images")
                setattr(self, name, value)
        for name in ("depth_paths", "label_paths", "feature_paths"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} images")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def has_poses(self) -> bool:
        return self.camera_to_worlds is not None

    def subset(self, indices: list[int] | np.ndarray) -> "SceneData":
        """The same scene restricted to ``indices`` (in that order)."""
        idx = [int(i) for i in indices]

        def pick(seq):
            return None if seq is None else [seq[i] for i in idx]

        return SceneData(
            name=self.name,
            root=self.root,
            image_paths=pick(self.image_paths),
            image_sizes=self.image_sizes[idx],
            camera_to_worlds=None if self.camera_to_worlds is None else self.camera_to_worlds[idx],
            intrinsics=None if self.intrinsics is None else self.intrinsics[idx],
            depth_paths=pick(self.depth_paths),
            depth_scale=self.depth_scale,
            label_paths=pick(self.label_paths),
            label_table=self.label_table,
            map_intrinsics=None if self.map_intrinsics is None else self.map_intrinsics[idx],
            feature_paths=pick(self.feature_paths),
            frame_ids=pick(self.frame_ids),
            skipped=list(self.skipped),
        )
