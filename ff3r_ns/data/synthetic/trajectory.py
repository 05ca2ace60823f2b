"""Cameras of a room's views: poses along its camera path and the pinhole intrinsics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ff3r_ns.data.synthetic.config import RoomConfig
from ff3r_ns.data.synthetic.room import Room


@dataclass
class ViewCameras:
    """Pinhole cameras of the views: OpenCV camera-to-world poses and one shared intrinsic matrix."""

    camera_to_worlds: np.ndarray
    """[N, 4, 4] float64 OpenCV camera-to-world."""
    intrinsics: np.ndarray
    """[3, 3] float64 pinhole intrinsics in pixels."""
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.camera_to_worlds)


def make_cameras(room: Room, config: RoomConfig) -> ViewCameras:
    """``config.num_views`` cameras evenly spaced along the room's closed path, looking into the room."""
    t = np.arange(config.num_views) / config.num_views
    centres, targets = room.camera_path.centres_and_targets(t)
    forward = targets - centres
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    c2w = np.zeros((config.num_views, 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3], c2w[:, 3, 3] = right, down, forward, centres, 1.0
    size = config.image_size
    focal = size / 2 / math.tan(math.radians(config.fov_deg) / 2)
    intrinsics = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return ViewCameras(c2w, intrinsics, size, size)
