"""Loading a set of views of a scene as network-ready tensors, cut the same way as their geometry.

Both the feed-forward pipeline (all context views of one scene) and training (a sampled context per
step) go through ``load_views``: images are center-cropped and resized (antialiased), depth and label
maps are cut identically (nearest), intrinsics follow the crop exactly, and a synthetic room's teacher
features are cut to half the output size. Maps recorded by another camera (``SceneData.map_intrinsics``)
are first resampled into the image's frame, and source label ids mapped to classes (``SceneData.label_table``),
see ``ff3r_ns.data.sensor_maps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from jaxtyping import Float, Int
from PIL import Image
from torch import Tensor

from ff3r_ns.data.images import load_image
from ff3r_ns.data.sampling import center_crop_resize
from ff3r_ns.data.scene import SceneData
from ff3r_ns.data.sensor_maps import resample_to_image

Size = Union[int, tuple[int, int]]


@dataclass
class Views:
    """s views of one scene, all of the same size (h, w)."""

    indices: list[int]
    """Frame indices into the scene, in the order of the tensors."""
    images: Float[Tensor, "s 3 h w"]
    """RGB in [0, 1]."""
    intrinsics: Optional[Float[Tensor, "s 3 3"]] = None
    """Pinhole intrinsics in pixels of the loaded views, or None when the scene has none."""
    camera_to_worlds: Optional[Float[Tensor, "s 4 4"]] = None
    """The scene's OpenCV camera-to-world poses, or None for an unposed scene."""
    depth: Optional[Float[Tensor, "s h w"]] = None
    """Z-depth in the scene's units, 0 where unknown."""
    labels: Optional[Int[Tensor, "s h w"]] = None
    """Class ids (0 = none)."""
    features: Optional[Float[Tensor, "s c hf wf"]] = None
    """2D semantic-teacher features at half the view size."""

    def __len__(self) -> int:
        return len(self.indices)


def fit_size(height: int, width: int, long_side: int, multiple: int = 14) -> tuple[int, int]:
    """(h, w) with the aspect of the input, the long side ``long_side``, both multiples of ``multiple``."""
    scale = long_side / max(height, width)
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return int(h), int(w)


def load_depth(path: Path, scale: float) -> np.ndarray:
    """A depth map as float32 in scene units: 16-bit PNG values times ``scale``, or a .npy of depths."""
    if path.suffix == ".npy":
        return np.load(path).astype(np.float32) * np.float32(scale)
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.float32) * np.float32(scale)


def load_teacher(path: Path) -> np.ndarray:
    """A 2D teacher feature map [h, w, c]: a synthetic room's factored .npz, or a plain .npy."""
    if path.suffix == ".npz":
        from ff3r_ns.data.synthetic import load_teacher_features

        return load_teacher_features(path).numpy()
    return np.load(path).astype(np.float32)


def load_views(
    scene: SceneData,
    indices: Sequence[int],
    size: Size,
    depth: bool = False,
    labels: bool = False,
    features: bool = False,
) -> Views:
    """The views ``indices`` of ``scene`` cropped and resized to ``size`` (an int for squares, or (h, w)).

    ``depth``, ``labels`` and ``features`` load those maps where the scene has them (None otherwise).
    """
    indices = [int(i) for i in indices]
    out_h, out_w = (size, size) if isinstance(size, int) else size
    images, intrinsics, depths, label_maps, feature_maps = [], [], [], [], []
    for i in indices:
        k = None if scene.intrinsics is None else scene.intrinsics[i]
        image = load_image(scene.image_paths[i])
        stored_hw = tuple(int(v) for v in scene.image_sizes[i])
        if image.shape[:2] != stored_hw:
            raise ValueError(f"{scene.image_paths[i]} is {image.shape[:2]} but the scene lists {stored_hw}")
        image, k = center_crop_resize(image, k, (out_h, out_w))
        images.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        if k is not None:
            intrinsics.append(torch.as_tensor(k, dtype=torch.float32))
        if depth and scene.depth_paths is not None:
            d = _in_image_frame(scene, i, load_depth(scene.depth_paths[i], scene.depth_scale), stored_hw)
            depths.append(torch.from_numpy(_cut_like(d, stored_hw, (out_h, out_w), "nearest")))
        if labels and scene.label_paths is not None:
            with Image.open(scene.label_paths[i]) as img:
                lab = np.asarray(img, dtype=np.int64)
            if scene.label_table is not None:
                lab = scene.label_table(lab)
            lab = _in_image_frame(scene, i, lab, stored_hw)
            label_maps.append(torch.from_numpy(_cut_like(lab, stored_hw, (out_h, out_w), "nearest")))
        if features and scene.feature_paths is not None:
            f = load_teacher(scene.feature_paths[i])
            f = center_crop_resize(f, None, (max(1, out_h // 2), max(1, out_w // 2)))[0]
            feature_maps.append(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1))
    poses = None
    if scene.camera_to_worlds is not None:
        poses = torch.as_tensor(scene.camera_to_worlds[indices], dtype=torch.float32)
    return Views(
        indices=indices,
        images=torch.stack(images).float(),
        intrinsics=torch.stack(intrinsics) if intrinsics else None,
        camera_to_worlds=poses,
        depth=torch.stack(depths) if depths else None,
        labels=torch.stack(label_maps) if label_maps else None,
        features=torch.stack(feature_maps).float() if feature_maps else None,
    )


def _in_image_frame(scene: SceneData, i: int, array: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Frame ``i``'s depth or label map in its image's pixel grid when it was recorded by another camera."""
    if scene.map_intrinsics is None:
        return array
    if scene.intrinsics is None:
        raise ValueError(f"scene {scene.name} gives map_intrinsics but no image intrinsics to resample into")
    return resample_to_image(array, scene.map_intrinsics[i], scene.intrinsics[i], image_hw)


def _cut_like(array: np.ndarray, image_hw: tuple[int, int], size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Cut a per-pixel map the way its image is cut; maps stored at another size are first brought to it."""
    if array.shape[:2] != image_hw:
        # e.g. 7-Scenes depth at 640x480 beside colour of the same size, or a map at half size:
        # nearest-resize to the image grid first so that the crop box is the image's.
        rows = np.minimum(((np.arange(image_hw[0]) + 0.5) * array.shape[0] / image_hw[0]).astype(np.int64), array.shape[0] - 1)
        cols = np.minimum(((np.arange(image_hw[1]) + 0.5) * array.shape[1] / image_hw[1]).astype(np.int64), array.shape[1] - 1)
        array = array[rows][:, cols]
    return np.ascontiguousarray(center_crop_resize(array, None, size, interpolation)[0])
