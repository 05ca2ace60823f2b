"""The constant-pose baseline: what a camera head scores without looking at the images.

Every non-reference camera is put at the dataset's mean relative pose, the reference (first context) view
at the identity, in the reference camera's frame as FF3R predicts. The mean relative pose is the mean of
``T_0^-1 T_i`` over every non-reference context view of every scene: translations averaged, rotations
averaged as unit quaternions (signs on one hemisphere, the mean renormalized: the chordal L2 mean). This
is the dataset-mean pose encoding (VGGT's translation + quaternion, the field of view left out: poses
only) decoded. The baseline's cameras are then scored like a prediction: Sim(3)-aligned onto the truth
(:func:`~ff3r_ns.eval.alignment.pose_errors`). A camera head that has learned nothing about relative
motion scores about this; one that compares views scores far below it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float

from ff3r_ns.eval.alignment import pose_errors
from ff3r_ns.network.cameras import matrix_to_quat, quat_to_matrix


def relative_poses(c2w: Float[np.ndarray, "n 4 4"]) -> Float[np.ndarray, "n-1 4 4"]:
    """``T_0^-1 T_i`` for i >= 1: each camera in the first camera's frame."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) < 2:
        raise ValueError(f"need [n, 4, 4] camera-to-world poses with n >= 2, got shape {c2w.shape}")
    return np.linalg.inv(c2w[0]) @ c2w[1:]


def mean_relative_pose(scenes_c2w: Sequence[Float[np.ndarray, "n 4 4"]]) -> Float[np.ndarray, "4 4"]:
    """The mean of every scene's relative poses (module docstring): one ``[4, 4]`` camera-to-reference pose."""
    relative = np.concatenate([relative_poses(c2w) for c2w in scenes_c2w])
    quats = matrix_to_quat(torch.from_numpy(relative[:, :3, :3]), order="wxyz").numpy()
    quats = quats * np.where(quats[:, :1] < 0, -1.0, 1.0)  # q and -q are one rotation: keep w >= 0
    mean = quats.mean(axis=0)
    if np.linalg.norm(mean) < 1e-9:
        raise ValueError("the relative rotations cancel out: their mean rotation is undefined")
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(torch.from_numpy(mean / np.linalg.norm(mean)), order="wxyz").numpy()
    pose[:3, 3] = relative[:, :3, 3].mean(axis=0)
    return pose


def constant_pose_prediction(num_views: int, mean_pose: Float[np.ndarray, "4 4"]) -> Float[np.ndarray, "n 4 4"]:
    """The baseline's cameras: the identity for the reference view, ``mean_pose`` for every other."""
    poses = np.tile(np.asarray(mean_pose, dtype=np.float64), (num_views, 1, 1))
    poses[0] = np.eye(4)
    return poses


def constant_pose_errors(scenes_c2w: Sequence[Float[np.ndarray, "n 4 4"]]) -> list[dict[str, float]]:
    """The baseline's pose errors after Sim(3) alignment, per scene, with the mean pose of these scenes."""
    mean_pose = mean_relative_pose(scenes_c2w)
    return [pose_errors(constant_pose_prediction(len(c2w), mean_pose), c2w) for c2w in scenes_c2w]
