"""COLMAP sparse models (``cameras`` + ``images``, text or binary) beside an image folder.

COLMAP stores world-to-camera rotations as quaternions (w, x, y, z) and translations, in OpenCV camera
axes; the reader inverts them to OpenCV camera-to-world. Intrinsics keep COLMAP's principal point as
written (the same numbers that nerfstudio's ``transforms.json`` carries); distortion is not applied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np
import torch

from ff3r_ns.data.images import natural_sort_key
from ff3r_ns.data.read_common import (
    SceneError,
    display,
    name_list,
    require_path,
    require_views,
    screen_images,
    warn,
)
from ff3r_ns.data.read_nerfstudio import DOWNSCALED_FOLDERS
from ff3r_ns.data.scene import SceneData
from ff3r_ns.network.cameras import quat_to_matrix, to_4x4, w2c_to_c2w

# model name -> (binary model id, number of parameters, True when one focal length f is shared)
CAMERA_MODELS = {
    "SIMPLE_PINHOLE": (0, 3, True),
    "PINHOLE": (1, 4, False),
    "SIMPLE_RADIAL": (2, 4, True),
    "RADIAL": (3, 5, True),
    "OPENCV": (4, 8, False),
    "OPENCV_FISHEYE": (5, 8, False),
    "FULL_OPENCV": (6, 12, False),
    "FOV": (7, 5, False),
    "SIMPLE_RADIAL_FISHEYE": (8, 4, True),
    "RADIAL_FISHEYE": (9, 5, True),
    "THIN_PRISM_FISHEYE": (10, 12, False),
}
_MODEL_BY_ID = {model_id: name for name, (model_id, _, _) in CAMERA_MODELS.items()}

_MODEL_FOLDERS = (".", "sparse/0", "sparse", "reconstruction", "colmap/sparse/0")
"""Where a COLMAP model is looked for, relative to the path given (first match wins)."""


@dataclass
class ColmapCamera:
    """One camera: its COLMAP model name, the image size it was calibrated at, and its parameters."""

    model: str
    width: int
    height: int
    params: np.ndarray

    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole K from the model's focal length(s) and principal point."""
        shared_focal = CAMERA_MODELS[self.model][2]
        if shared_focal:
            fx = fy = self.params[0]
            cx, cy = self.params[1:3]
        else:
            fx, fy, cx, cy = self.params[:4]
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass
class ColmapImage:
    """One registered image: its file name, camera and world-to-camera pose."""

    name: str
    camera_id: int
    qvec: np.ndarray  # world-to-camera rotation, quaternion w, x, y, z
    tvec: np.ndarray  # world-to-camera translation


def _camera_to_worlds(images: list[ColmapImage]) -> np.ndarray:
    """[N, 4, 4] OpenCV camera-to-world: the inverses of the images' [R(q) | t]."""
    rotation = quat_to_matrix(torch.from_numpy(np.stack([image.qvec for image in images])), order="wxyz")
    translation = torch.from_numpy(np.stack([image.tvec for image in images]))[..., None]
    return to_4x4(w2c_to_c2w(torch.cat([rotation, translation], dim=-1))).numpy()


def find_colmap_model(path: Path) -> Optional[Path]:
    """The folder holding ``cameras.{bin,txt}`` and ``images.{bin,txt}`` at or below ``path``, or None."""
    for relative in _MODEL_FOLDERS:
        folder = path / relative
        if all((folder / f"{n}.bin").is_file() or (folder / f"{n}.txt").is_file() for n in ("cameras", "images")):
            return folder.resolve()
    return None


def _text_lines(file: Path) -> list[str]:
    return [line.rstrip("\n") for line in file.read_text().splitlines() if not line.startswith("#")]


def _camera(model: str, width: int, height: int, params: list[float], where: str) -> ColmapCamera:
    if model not in CAMERA_MODELS:
        raise SceneError(f"{where}: unknown COLMAP camera model {model!r}; known: {', '.join(CAMERA_MODELS)}")
    if len(params) != CAMERA_MODELS[model][1]:
        raise SceneError(f"{where}: camera model {model} needs {CAMERA_MODELS[model][1]} parameters, got {len(params)}")
    return ColmapCamera(model, width, height, np.asarray(params, dtype=np.float64))


def _read_cameras_text(file: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, line in enumerate(_text_lines(file)):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{file}: camera line {number + 1}"
        try:
            params = [float(t) for t in tokens[4:]]
            cameras[int(tokens[0])] = _camera(tokens[1], int(tokens[2]), int(tokens[3]), params, where)
        except (IndexError, ValueError) as err:
            raise SceneError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[] ({err})") from err
    return cameras


def _read_images_text(file: Path) -> list[ColmapImage]:
    """Two lines per image: IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then its (possibly empty) points."""
    lines, images, i = _text_lines(file), [], 0
    while i < len(lines):
        tokens = lines[i].split()
        if not tokens:
            i += 1
            continue
        try:
            values = [float(t) for t in tokens[1:8]]
            images.append(ColmapImage(" ".join(tokens[9:]), int(tokens[8]), np.array(values[:4]), np.array(values[4:])))
        except (IndexError, ValueError) as err:
            expected = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"
            raise SceneError(f"{file}: expected {expected}, got {lines[i][:80]!r}") from err
        i += 2  # skip the POINTS2D line
    return images


def _unpack(fid: BinaryIO, fmt: str, file: Path) -> tuple:
    size = struct.calcsize(fmt)
    data = fid.read(size)
    if len(data) != size:
        raise SceneError(f"{file} is truncated: re-export the COLMAP model")
    return struct.unpack(fmt, data)


def _read_cameras_binary(file: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    with open(file, "rb") as fid:
        (count,) = _unpack(fid, "<Q", file)
        for _ in range(count):
            camera_id, model_id, width, height = _unpack(fid, "<iiQQ", file)
            if model_id not in _MODEL_BY_ID:
                raise SceneError(f"{file}: unknown COLMAP camera model id {model_id}")
            model = _MODEL_BY_ID[model_id]
            params = _unpack(fid, f"<{CAMERA_MODELS[model][1]}d", file)
            cameras[camera_id] = _camera(model, width, height, list(params), str(file))
    return cameras


def _read_images_binary(file: Path) -> list[ColmapImage]:
    images = []
    with open(file, "rb") as fid:
        (count,) = _unpack(fid, "<Q", file)
        for _ in range(count):
            values = _unpack(fid, "<idddddddi", file)
            name = bytearray()
            while (char := fid.read(1)) not in (b"\x00", b""):
                name += char
            (num_points,) = _unpack(fid, "<Q", file)
            fid.seek(24 * num_points, 1)  # x, y (double) and point3D id (int64) per observation
            images.append(ColmapImage(name.decode(), values[8], np.array(values[1:5]), np.array(values[5:8])))
    return images


def read_colmap_model(model_dir: str | Path) -> tuple[dict[int, ColmapCamera], list[ColmapImage]]:
    """Cameras (by id) and registered images of a COLMAP model folder; binary files win over text."""
    model_dir = Path(model_dir)
    readers = {
        "cameras": (_read_cameras_binary, _read_cameras_text),
        "images": (_read_images_binary, _read_images_text),
    }
    out = []
    for name, (read_bin, read_txt) in readers.items():
        binary, text = model_dir / f"{name}.bin", model_dir / f"{name}.txt"
        if binary.is_file():
            out.append(read_bin(binary))
        elif text.is_file():
            out.append(read_txt(text))
        else:
            raise SceneError(f"no {name}.bin or {name}.txt in {model_dir}: pass a COLMAP model folder (e.g. sparse/0)")
    return out[0], out[1]


def _find_images_dir(start: Path, model_dir: Path) -> Optional[Path]:
    """An ``images/`` folder beside the model or above it, up to the path given (two levels above a
    model folder given directly, i.e. its scene folder for ``sparse/0``); where there is none, a
    downsampled ``images_2|4|8/`` there (DL3DV ships some scenes with ``images_4`` only)."""
    folders = [model_dir, *model_dir.parents]
    limit = 2 if start == model_dir else folders.index(start)
    for folder in folders[: limit + 1]:
        for name in ("images", *DOWNSCALED_FOLDERS):
            if (folder / name).is_dir():
                return folder / name
    return None


def read_colmap(path: str | Path, images_dir: str | Path | None = None, verify: bool = True) -> SceneData:
    """A posed scene from a COLMAP model and its images.

    Args:
        path: the scene folder (holding ``sparse/0``, ``sparse``, ``reconstruction`` or the model files).
        images_dir: the image folder; default ``images/`` (or ``images_2|4|8/``) beside the model or in a
            parent folder.
        verify: fully decode every image to find truncated files (otherwise headers only).
    """
    path = require_path(path, "COLMAP scene")
    model_dir = find_colmap_model(path)
    if model_dir is None:
        raise SceneError(
            f"no COLMAP model in {path}: expected cameras.{{bin,txt}} and images.{{bin,txt}} in one of "
            f"{', '.join(_MODEL_FOLDERS)} there"
        )
    if images_dir is not None:
        images_root = require_path(images_dir, "COLMAP image folder")
    else:
        images_root = _find_images_dir(path, model_dir)
    if images_root is None:
        raise SceneError(
            f"no image folder for the COLMAP model {model_dir}: put the images in {path / 'images'}, "
            "or pass their folder"
        )
    cameras, images = read_colmap_model(model_dir)
    if not images:
        raise SceneError(f"the COLMAP model {model_dir} has no registered images: rerun the reconstruction")
    for image in images:
        if image.camera_id not in cameras:
            raise SceneError(
                f"{model_dir}: image {image.name} refers to camera {image.camera_id}, which is not defined"
            )
    images.sort(key=lambda image: natural_sort_key(image.name))

    missing = [image.name for image in images if not (images_root / image.name).is_file()]
    if missing:
        warn(f"{model_dir}: skipped {len(missing)} of {len(images)} images missing from {images_root}: "
             f"{name_list(missing)}")
        images = [image for image in images if image.name not in set(missing)]
    source = f"COLMAP scene {path}"
    candidates = [images_root / image.name for image in images]
    keep, sizes, unreadable = screen_images(candidates, source, images_root, verify)
    images = [images[k] for k in keep]
    image_paths = [candidates[k] for k in keep]
    require_views(image_paths, source, f"Check that {images_root} holds the images named in the model.")

    intrinsics = []
    for image, (height, width) in zip(images, sizes):
        camera = cameras[image.camera_id]
        k = camera.intrinsics()
        k[0] *= width / camera.width  # images stored at another resolution than the model's
        k[1] *= height / camera.height
        intrinsics.append(k)
    root = images_root.parent if path == model_dir else path  # a model folder given: name the scene
    return SceneData(
        name=root.name,
        root=root,
        image_paths=image_paths,
        image_sizes=sizes,
        camera_to_worlds=_camera_to_worlds(images),
        intrinsics=np.stack(intrinsics),
        frame_ids=[display(p, images_root) for p in image_paths],
        skipped=[(images_root / name, "file not found") for name in missing] + unreadable,
    )
