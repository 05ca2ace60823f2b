"""Rendering views of a room: RGB, z-depth and class labels per pixel."""

from __future__ import annotations

import numpy as np
import torch

from ff3r_ns.data.synthetic.raytrace import PackedRoom, camera_rects, shell_exit, surface, trace
from ff3r_ns.data.synthetic.room import MATERIAL_KINDS, Room
from ff3r_ns.data.synthetic.shading import shade, texture_albedo
from ff3r_ns.data.synthetic.trajectory import ViewCameras


def render_view(
    pk: PackedRoom, c2w: np.ndarray, intrinsics: np.ndarray, width: int, height: int, shadows: bool
) -> dict[str, np.ndarray]:
    fx, fy, cx, cy = (float(intrinsics[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    vs, us = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    x = ((us.reshape(-1) + 0.5) - cx) / fx
    y = ((vs.reshape(-1) + 0.5) - cy) / fy
    R = torch.from_numpy(c2w[:3, :3].astype(np.float32))
    origin = torch.from_numpy(c2w[:3, 3].astype(np.float32))[None]
    direction = x[:, None] * R[:, 0] + y[:, None] * R[:, 1] + R[:, 2]  # unnormalized: z-depth == t
    screen = torch.stack([us.reshape(-1) + 0.5, vs.reshape(-1) + 0.5], -1)
    rects = camera_rects(pk, c2w, intrinsics)
    t, prim = trace(
        pk, origin, direction, shell_exit(pk, origin, direction), screen, rects, list(range(len(pk.groups)))
    )
    p = origin + t[:, None] * direction
    normal, uv, material, label, key = surface(pk, p, prim)
    params = pk.materials[material]
    albedo = texture_albedo(params, uv, key)
    emissive = params[:, 0] == MATERIAL_KINDS.index("emissive")
    radiance = shade(pk, p, normal, albedo, emissive, shadows)
    srgb = (radiance.clamp(0, 1) ** (1 / 2.2) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return {
        "rgb": srgb.reshape(height, width, 3).numpy(),
        "depth": t.reshape(height, width).numpy(),
        "labels": label.to(torch.uint8).reshape(height, width).numpy(),
    }


def render_views(room: Room, cameras: ViewCameras, shadows: bool = True) -> dict[str, np.ndarray]:
    """Render every camera: ``rgb`` uint8 [N, H, W, 3], ``depth`` float32 [N, H, W] (metres, z-depth),
    ``labels`` uint8 [N, H, W] (class ids)."""
    pk = PackedRoom.build(room)
    views = [
        render_view(pk, c2w, cameras.intrinsics, cameras.width, cameras.height, shadows)
        for c2w in cameras.camera_to_worlds
    ]
    return {key: np.stack([v[key] for v in views]) for key in ("rgb", "depth", "labels")}
