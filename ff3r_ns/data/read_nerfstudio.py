"""nerfstudio / instant-ngp scenes: a ``transforms.json`` beside the images.

Keys read (per frame, or at the top level for all frames): ``file_path``, ``transform_matrix``
(OpenGL camera-to-world), ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h`` (or ``camera_angle_x`` /
``camera_angle_y`` as in the Blender scenes), and optionally per frame ``depth_file_path``,
``semantic_file_path``, ``feature_file_path``, with the top-level ``depth_unit_scale_factor``.
Distortion coefficients (``k1``, ``p1``, ...) are not applied: images are taken as pinhole.
Intrinsics are rescaled to the image found on disk, so that a file listed as ``images/x.png`` but
present only downsampled in ``images_2|4|8/`` (DL3DV) is read with matching intrinsics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ff3r_ns.data.read_common import (
    SceneError,
    display,
    name_list,
    require_path,
    require_views,
    screen_images,
    warn,
)
from ff3r_ns.data.scene import SceneData
from ff3r_ns.network.cameras import opengl_to_opencv_c2w

TRANSFORMS_FILE = "transforms.json"

_OPTIONAL_FILES = {"depth": "depth_file_path", "label": "semantic_file_path", "feature": "feature_file_path"}
DOWNSCALED_FOLDERS = ("images_2", "images_4", "images_8")
"""Where nerfstudio's and DL3DV's downsampled copies of ``images/`` live (factor 2, 4, 8)."""
_MM_TO_M = 0.001  # depth_unit_scale_factor of 16-bit PNG depth in millimetres


def _resolve(root: Path, relative: str) -> Path:
    """The file a ``*_file_path`` entry means: as written, else with a guessed suffix or downsampled."""
    path = root / relative
    if path.exists():
        return path
    if not path.suffix:  # Blender scenes list "./train/r_0" for "./train/r_0.png"
        for suffix in (".png", ".jpg"):
            if path.with_suffix(suffix).exists():
                return path.with_suffix(suffix)
    parts = Path(relative).parts
    if parts and parts[0] == "images":
        for folder in DOWNSCALED_FOLDERS:
            candidate = root.joinpath(folder, *parts[1:])
            if candidate.exists():
                return candidate
    return path


def _number(value: Any, key: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SceneError(f"{where}: key '{key}' must be a number, got {value!r}") from None


def frame_pose(frame: dict, where: str) -> np.ndarray:
    """The 4x4 ``transform_matrix`` of ``frame`` as written (OpenGL camera-to-world); ``SceneError`` if malformed."""
    if "transform_matrix" not in frame:
        raise SceneError(f"{where}: key 'transform_matrix' (4x4 camera-to-world) is missing")
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape == (3, 4):
        matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise SceneError(f"{where}: key 'transform_matrix' must be 4x4 (or 3x4) finite numbers")
    return matrix


def frame_intrinsics(meta: dict, frame: dict, size: np.ndarray, where: str) -> np.ndarray:
    """3x3 K of one frame, in pixels of its image on disk ([height, width] = ``size``)."""

    def get(key: str) -> Optional[float]:
        value = frame.get(key, meta.get(key))
        return None if value is None else _number(value, key, where)

    height, width = float(size[0]), float(size[1])
    w, h = get("w") or width, get("h") or height
    fx, fy = get("fl_x"), get("fl_y")
    angle_x, angle_y = get("camera_angle_x"), get("camera_angle_y")
    if fx is None and angle_x is not None:
        fx = 0.5 * w / math.tan(0.5 * angle_x)
    if fy is None and angle_y is not None:
        fy = 0.5 * h / math.tan(0.5 * angle_y)
    if fx is None:
        fx = fy
    if fx is None:
        raise SceneError(
            f"{where}: no focal length: give key 'fl_x' (and 'fl_y', 'cx', 'cy', 'w', 'h') at the top level "
            "or per frame, or 'camera_angle_x'"
        )
    fy = fx if fy is None else fy
    cx, cy = get("cx"), get("cy")
    cx = 0.5 * w if cx is None else cx
    cy = 0.5 * h if cy is None else cy
    sx, sy = width / w, height / h
    return np.array([[fx * sx, 0.0, cx * sx], [0.0, fy * sy, cy * sy], [0.0, 0.0, 1.0]])


def read_nerfstudio(path: str | Path, verify: bool = True) -> SceneData:
    """A posed scene from a nerfstudio ``transforms.json`` (``path`` is the file or its folder).

    Frames whose image (or depth/label/feature) file is missing are skipped with one warning naming
    them; at least two frames must remain.
    """
    path = require_path(path, "nerfstudio scene")
    file = path if path.is_file() else path / TRANSFORMS_FILE
    if not file.is_file():
        raise SceneError(
            f"no {TRANSFORMS_FILE} in {path}: pass a nerfstudio scene folder, or use the image-folder or "
            "COLMAP reader for this data"
        )
    root = file.parent
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SceneError(f"{file} is not valid JSON ({err}): fix or regenerate it") from err
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise SceneError(f"{file}: key 'frames' must be a non-empty list of frames (each with 'file_path')")

    entries, missing = [], []
    for i, frame in enumerate(frames):
        where = f"{file}: frames[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise SceneError(f"{where}: key 'file_path' (image path relative to {root}) is missing")
        files = {"image": _resolve(root, frame["file_path"])}
        for kind, key in _OPTIONAL_FILES.items():
            if key in frame:
                if not isinstance(frame[key], str):
                    raise SceneError(f"{where}: key '{key}' must be a path relative to {root}")
                files[kind] = _resolve(root, frame[key])
        absent = [display(p, root) for p in files.values() if not p.is_file()]
        if absent:
            missing.extend(absent)
            continue
        entries.append((i, frame, files, frame_pose(frame, where)))
    skipped = [(root / name, "file not found") for name in missing]
    if missing:
        warn(
            f"{file}: skipped {len(frames) - len(entries)} of {len(frames)} frames whose files are missing: "
            f"{name_list(missing)}"
        )

    source = f"nerfstudio scene {file}"
    keep, sizes, unreadable = screen_images([e[2]["image"] for e in entries], source, root, verify)
    entries = [entries[k] for k in keep]
    image_paths = [e[2]["image"] for e in entries]
    require_views(image_paths, source, f"Check the 'file_path' entries of {file}.")

    optional = {}
    for kind, key in _OPTIONAL_FILES.items():
        have = [kind in e[2] for e in entries]
        if all(have):
            optional[kind] = [e[2][kind] for e in entries]
        elif any(have):
            warn(f"{file}: '{key}' is given for only {sum(have)} of {len(have)} usable frames; it is ignored")
    depth_scale = 1.0
    if "depth" in optional:
        default = 1.0 if optional["depth"][0].suffix.lower() == ".npy" else _MM_TO_M
        depth_scale = _number(meta.get("depth_unit_scale_factor", default), "depth_unit_scale_factor", str(file))

    intrinsics = [frame_intrinsics(meta, e[1], size, f"{file}: frames[{e[0]}]") for e, size in zip(entries, sizes)]
    poses = opengl_to_opencv_c2w(torch.from_numpy(np.stack([e[3] for e in entries]))).numpy()
    return SceneData(
        name=root.name,
        root=root,
        image_paths=image_paths,
        image_sizes=sizes,
        camera_to_worlds=poses,
        intrinsics=np.stack(intrinsics),
        depth_paths=optional.get("depth"),
        depth_scale=depth_scale,
        label_paths=optional.get("label"),
        feature_paths=optional.get("feature"),
        skipped=skipped + unreadable,
    )
