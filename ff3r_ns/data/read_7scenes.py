"""Microsoft 7-Scenes layout: ``seq-XX/frame-XXXXXX.{color.png|color.jpg, depth.png, pose.txt}``.

Depth is 16-bit PNG in millimetres (0 = invalid); poses are 4x4 camera-to-world in metres (OpenCV
axes, from KinectFusion). The dataset documents one pinhole camera for all frames: fx = fy = 585,
cx = 320, cy = 240 at 640x480 (the depth sensor is not registered to the colour camera, so depth and
colour align only approximately).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ff3r_ns.data.images import natural_sort_key
from ff3r_ns.data.read_common import SceneError, name_list, require_path, require_views, screen_images, warn
from ff3r_ns.data.scene import SceneData

SEVEN_SCENES_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])
"""Documented intrinsics of the colour camera at 640x480."""
SEVEN_SCENES_SIZE = (480, 640)
"""(height, width) that ``SEVEN_SCENES_K`` refers to."""

_COLOR_GLOB = "frame-*.color.*"
_SPLIT_FILES = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}

Sequences = Union[str, Sequence[Union[int, str]], None]


def is_7scenes(path: Path) -> bool:
    """True for a 7-Scenes scene folder (holding ``seq-*``) or one of its sequence folders."""
    return any(path.glob(f"seq-*/{_COLOR_GLOB}")) or (path.name.startswith("seq-") and any(path.glob(_COLOR_GLOB)))


def _sequence_name(value: Union[int, str]) -> str:
    """'seq-01' from 1, '1', '01', 'seq-01' or 'sequence1' (the split files' spelling)."""
    digits = re.fullmatch(r"(?:seq-|sequence)?0*(\d+)", str(value).strip())
    return f"seq-{int(digits.group(1)):02d}" if digits else str(value)


def _select_sequences(path: Path, sequences: Sequences) -> list[Path]:
    available = sorted((p for p in path.glob("seq-*") if p.is_dir()), key=natural_sort_key)
    if sequences is None:
        return available
    if isinstance(sequences, str):
        if sequences not in _SPLIT_FILES:
            sequences = [sequences]
        else:
            split_file = path / _SPLIT_FILES[sequences]
            if not split_file.is_file():
                raise SceneError(f"{split_file} not found: list the sequences to read instead of '{sequences}'")
            sequences = split_file.read_text().split()
    names = [_sequence_name(s) for s in sequences]
    unknown = [n for n in names if not (path / n).is_dir()]
    if unknown:
        raise SceneError(
            f"7-Scenes sequence(s) {', '.join(unknown)} not found in {path}; available: "
            f"{', '.join(p.name for p in available) or 'none'}"
        )
    return [path / n for n in names]


def _load_pose(file: Path) -> np.ndarray | None:
    try:
        pose = np.loadtxt(file, dtype=np.float64)
    except (OSError, ValueError):
        return None
    return pose if pose.shape == (4, 4) and np.isfinite(pose).all() else None


def read_7scenes(path: str | Path, sequences: Sequences = None, verify: bool = True) -> SceneData:
    """A posed RGB-D scene in the 7-Scenes layout.

    Args:
        path: the scene folder (holding ``seq-XX``), or one sequence folder.
        sequences: which sequences to read, in that order: numbers or names (``[1, "seq-03"]``), or
            ``"train"`` / ``"test"`` for those listed in ``TrainSplit.txt`` / ``TestSplit.txt``;
            default all, in order.
        verify: fully decode every image to find truncated files (otherwise headers only).
    Frames without a readable pose or depth file are skipped with one warning naming them.
    """
    path = require_path(path, "7-Scenes scene")
    if path.name.startswith("seq-") and any(path.glob(_COLOR_GLOB)):
        folders = [path]
    else:
        folders = _select_sequences(path, sequences)
    if not folders:
        raise SceneError(f"no seq-XX folders in {path}: pass a 7-Scenes scene folder such as .../stairs")

    colors, depths, poses, frame_ids, skipped = [], [], [], [], []
    for folder in folders:
        for color in sorted(folder.glob(_COLOR_GLOB), key=natural_sort_key):
            stem = color.name.split(".")[0]  # frame-000000
            depth, pose_file = folder / f"{stem}.depth.png", folder / f"{stem}.pose.txt"
            pose = _load_pose(pose_file)
            if pose is None or not depth.is_file():
                reason = "no readable pose" if pose is None else "no depth file"
                skipped.append((color, reason))
                continue
            colors.append(color)
            depths.append(depth)
            poses.append(pose)
            frame_ids.append(f"{folder.name}/{stem}")
    if skipped:
        warn(f"7-Scenes {path}: skipped {len(skipped)} frame(s): "
             f"{name_list([f'{c.parent.name}/{c.name} ({r})' for c, r in skipped])}")

    source = f"7-Scenes scene {path}"
    keep, sizes, unreadable = screen_images(colors, source, path, verify)
    require_views([colors[k] for k in keep], source, "Choose more sequences or check the frame files.")
    scale = sizes[:, ::-1] / np.array(SEVEN_SCENES_SIZE[::-1], dtype=np.float64)  # [N, 2] (sx, sy)
    intrinsics = np.repeat(SEVEN_SCENES_K[None], len(keep), axis=0)
    intrinsics[:, :2] *= scale[:, :, None]
    return SceneData(
        name=path.parent.name if folders == [path] else path.name,
        root=path,
        image_paths=[colors[k] for k in keep],
        image_sizes=sizes,
        camera_to_worlds=np.stack([poses[k] for k in keep]),
        intrinsics=intrinsics,
        depth_paths=[depths[k] for k in keep],
        depth_scale=0.001,
        frame_ids=[frame_ids[k] for k in keep],
        skipped=skipped + unreadable,
    )
