"""ScanNet++ DSLR captures, in the pinhole form that the ScanNet++ toolkit's undistortion writes.

A scene ``<scene_id>/`` holds ``dslr/`` with::

    resized_images/DSC*.JPG                    fisheye images (OPENCV_FISHEYE, k1..k4)
    nerfstudio/transforms.json                 their cameras
    colmap/{cameras,images,points3D}.txt       the same cameras as a COLMAP model
    resized_undistorted_images/DSC*.JPG        pinhole images, written by the toolkit's undistortion
    nerfstudio/transforms_undistorted.json     their cameras (camera_model PINHOLE, k1..k4 zeroed)

(the toolkit's ``dslr/configs/undistort.yml`` names the image folder ``undistorted_images``; both names are
accepted). Only the undistorted form is read: FF3R's cameras are pinhole. Facts of the toolkit's transforms
that the reader relies on (``common/utils/nerfstudio.py`` and ``dslr/undistort.py`` of scannetpp/scannetpp):

- one camera for all frames, at the top level (``fl_x fl_y cx cy w h``);
- ``file_path`` is the file name inside the image folder, not a path relative to the json;
- training frames are in ``frames``, held-out ones in ``test_frames`` (absent, or without images, for the
  hidden test scenes); both are read, in file-name (capture) order, listed images that are missing skipped;
- ``transform_matrix`` is COLMAP's camera-to-world in nerfstudio's form: OpenGL camera axes, and world axes
  permuted as nerfstudio's COLMAP import does (x' = y, y' = x, z' = -z). The reader undoes both, so poses
  are OpenCV camera-to-world in the COLMAP world, which is the frame of the scene's laser scan and mesh.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ff3r_ns.data.images import natural_sort_key
from ff3r_ns.data.read_common import SceneError, display, name_list, require_path, require_views, screen_images, warn
from ff3r_ns.data.read_nerfstudio import frame_intrinsics, frame_pose
from ff3r_ns.data.scene import SceneData
from ff3r_ns.network.cameras import opengl_to_opencv_c2w

UNDISTORTED_TRANSFORMS = "nerfstudio/transforms_undistorted.json"
FISHEYE_TRANSFORMS = "nerfstudio/transforms.json"
UNDISTORTED_FOLDERS = ("resized_undistorted_images", "undistorted_images")
UNDISTORT_COMMAND = "python -m dslr.undistort dslr/configs/undistort.yml"
"""The ScanNet++ toolkit's undistortion (github.com/scannetpp/scannetpp), run from the toolkit's folder."""

NERFSTUDIO_FROM_COLMAP_WORLD = np.array(
    [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""World-axis permutation of the toolkit's transforms: ``c2w_transforms = P @ c2w_colmap`` (P is its own inverse)."""


def dslr_folder(path: Path) -> Path:
    """The ``dslr`` folder of a ScanNet++ scene given as the scene folder or as ``dslr`` itself."""
    return path if path.name == "dslr" else path / "dslr"


def is_scannetpp(path: Path) -> bool:
    """True for a ScanNet++ scene folder (or its ``dslr`` folder) with DSLR cameras in nerfstudio form."""
    return (dslr_folder(path) / "nerfstudio").is_dir()


def read_scannetpp(path: str | Path, verify: bool = True) -> SceneData:
    """A ScanNet++ DSLR scene, undistorted (see the module docstring); ``SceneError`` for the fisheye-only form."""
    path = require_path(path, "ScanNet++ scene")
    dslr = dslr_folder(path)
    file = dslr / UNDISTORTED_TRANSFORMS
    image_dir = next((dslr / name for name in UNDISTORTED_FOLDERS if (dslr / name).is_dir()), None)
    if not file.is_file() or image_dir is None:
        have = "only the fisheye DSLR images" if (dslr / FISHEYE_TRANSFORMS).is_file() else "no DSLR cameras"
        raise SceneError(
            f"ScanNet++ scene {path} has {have}: FF3R reads the pinhole form, {dslr / UNDISTORTED_TRANSFORMS} and "
            f"{dslr}/{UNDISTORTED_FOLDERS[0]}/. Write it with the ScanNet++ toolkit's undistortion: set data_root "
            f"in dslr/configs/undistort.yml and run `{UNDISTORT_COMMAND}`"
        )
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SceneError(f"{file} is not valid JSON ({err}): run the undistortion again") from err
    if meta.get("camera_model", "PINHOLE") != "PINHOLE":
        raise SceneError(f"{file}: camera_model is {meta['camera_model']}, expected PINHOLE from the undistortion")
    frames = [f for key in ("frames", "test_frames") for f in meta.get(key) or []]
    if not frames or not all(isinstance(f, dict) and isinstance(f.get("file_path"), str) for f in frames):
        raise SceneError(f"{file}: 'frames' must list frames, each with 'file_path' (a file in {image_dir})")
    frames.sort(key=lambda f: natural_sort_key(f["file_path"]))

    present = [f for f in frames if (image_dir / f["file_path"]).is_file()]
    missing = [(image_dir / f["file_path"], "file not found") for f in frames if f not in present]
    if missing:
        warn(f"{file}: skipped {len(missing)} of {len(frames)} frames whose image is missing from {image_dir}: "
             f"{name_list([display(p, dslr) for p, _ in missing])}")
    source = f"ScanNet++ scene {path}"
    images = [image_dir / f["file_path"] for f in present]
    keep, sizes, unreadable = screen_images(images, source, dslr, verify)
    require_views([images[k] for k in keep], source, f"Check {image_dir} against {file}.")
    present = [present[k] for k in keep]

    transforms = np.stack([frame_pose(f, f"{file}: {f['file_path']}") for f in present])
    opengl_c2w = NERFSTUDIO_FROM_COLMAP_WORLD @ transforms
    return SceneData(
        name=dslr.parent.name,
        root=dslr,
        image_paths=[images[k] for k in keep],
        image_sizes=sizes,
        camera_to_worlds=opengl_to_opencv_c2w(torch.from_numpy(opengl_c2w)).numpy(),
        intrinsics=np.stack([frame_intrinsics(meta, {}, size, str(file)) for size in sizes]),
        skipped=missing + unreadable,
    )
