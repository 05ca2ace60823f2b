"""Camera conventions of FF3R, all in one place.

- Extrinsics are OpenCV world-to-camera ``[R | t]`` (x right, y down, z forward), ``[..., 3, 4]``
  or ``[..., 4, 4]``, as VGGT predicts them: ``x_cam = R @ x_world + t``.
- Intrinsics are 3x3 pinhole matrices in pixels.
- Pixel centres: the pixel in column ``u`` and row ``v`` (integer indices) covers the square
  ``[u, u+1] x [v, v+1]`` of continuous image coordinates, so its centre is ``(u + 0.5, v + 0.5)``
  and the image spans ``[0, W] x [0, H]``. This is gsplat's rasterizer convention, and the principal
  point at the image centre is ``(W / 2, H / 2)`` as in VGGT's pose encoding. A resize then scales
  ``fx, cx`` by exactly ``W' / W`` (no half-pixel correction).
- Quaternions are unit and canonical with ``w >= 0``; ``"xyzw"`` (VGGT, scalar last) and ``"wxyz"``
  (gsplat, scalar first) orders are both supported, with converters between them.
- nerfstudio (and OpenGL) cameras look down -z with y up: the OpenCV camera axes with y and z flipped.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

QuatOrder = Literal["xyzw", "wxyz"]

PIXEL_CENTER = 0.5
"""Offset from a pixel's integer index to its centre in continuous image coordinates."""

# Camera-axis flip between OpenCV (y down, z forward) and OpenGL/nerfstudio (y up, z backward).
_CV_GL_FLIP = (1.0, -1.0, -1.0)


def _check_last_dims(name: str, x: Tensor, dims: tuple[int, ...]) -> None:
    if x.ndim < len(dims) or tuple(x.shape[-len(dims) :]) != dims:
        expected = " x ".join(str(d) for d in dims)
        raise ValueError(f"{name} must have shape [..., {expected}], got {tuple(x.shape)}")


def _check_pose(name: str, pose: Tensor) -> None:
    if pose.ndim < 2 or pose.shape[-1] != 4 or pose.shape[-2] not in (3, 4):
        raise ValueError(f"{name} must have shape [..., 3, 4] or [..., 4, 4], got {tuple(pose.shape)}")


def _check_order(order: str) -> None:
    if order not in ("xyzw", "wxyz"):
        raise ValueError(f'quaternion order must be "xyzw" or "wxyz", got {order!r}')


def xyzw_to_wxyz(q: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 4"]:
    """Scalar-last (VGGT) to scalar-first (gsplat) quaternion order."""
    _check_last_dims("q", q, (4,))
    return q[..., [3, 0, 1, 2]]


def wxyz_to_xyzw(q: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 4"]:
    """Scalar-first (gsplat) to scalar-last (VGGT) quaternion order."""
    _check_last_dims("q", q, (4,))
    return q[..., [1, 2, 3, 0]]


def quat_to_matrix(q: Float[Tensor, "*batch 4"], order: QuatOrder = "xyzw") -> Float[Tensor, "*batch 3 3"]:
    """Rotation matrix of a quaternion; the quaternion need not be normalized (it is, here)."""
    _check_last_dims("q", q, (4,))
    _check_order(order)
    if order == "xyzw":
        q = xyzw_to_wxyz(q)
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: Float[Tensor, "*batch 3 3"], order: QuatOrder = "xyzw") -> Float[Tensor, "*batch 4"]:
    """Unit quaternion of a rotation matrix, canonical sign ``w >= 0``.

    Each of the four rows below equals ``4 * q_k * (w, x, y, z)`` for one component ``q_k``; the row
    with the largest ``q_k`` (its diagonal entry) is the best conditioned, and normalizing it gives
    the quaternion. This stays accurate near 180 degrees, where ``w`` alone would vanish.
    """
    _check_last_dims("R", R, (3, 3))
    _check_order(order)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = R.reshape(R.shape[:-2] + (9,)).unbind(-1)
    candidates = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], dim=-1),
        ],
        dim=-2,
    )  # [..., 4, 4], row k = 4 q_k (w, x, y, z)
    best = candidates.diagonal(dim1=-2, dim2=-1).argmax(dim=-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = F.normalize(q, dim=-1)
    q = torch.where(q[..., :1] < 0, -q, q)
    return wxyz_to_xyzw(q) if order == "xyzw" else q


def to_4x4(pose: Float[Tensor, "*batch 3 4"]) -> Float[Tensor, "*batch 4 4"]:
    """Append the ``[0, 0, 0, 1]`` row to ``[R | t]`` (a 4x4 input is returned unchanged)."""
    _check_pose("pose", pose)
    if pose.shape[-2] == 4:
        return pose
    bottom = torch.zeros(pose.shape[:-2] + (1, 4), dtype=pose.dtype, device=pose.device)
    bottom[..., 0, 3] = 1
    return torch.cat([pose, bottom], dim=-2)


def _invert_rigid(pose: Tensor) -> Tensor:
    # Closed form R^T, -R^T t: exact for rotations and cheaper than a general inverse.
    _check_pose("pose", pose)
    R, t = pose[..., :3, :3], pose[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    inverse = torch.cat([Rt, -Rt @ t], dim=-1)
    return to_4x4(inverse) if pose.shape[-2] == 4 else inverse


def w2c_to_c2w(w2c: Float[Tensor, "*batch r 4"]) -> Float[Tensor, "*batch r 4"]:
    """World-to-camera ``[R | t]`` to camera-to-world ``[R^T | -R^T t]``; keeps 3x4 or 4x4."""
    return _invert_rigid(w2c)


def c2w_to_w2c(c2w: Float[Tensor, "*batch r 4"]) -> Float[Tensor, "*batch r 4"]:
    """Camera-to-world to world-to-camera (the same rigid inverse); keeps 3x4 or 4x4."""
    return _invert_rigid(c2w)


def _flip_camera_axes(c2w: Tensor) -> Tensor:
    _check_pose("c2w", c2w)
    flip = c2w.new_tensor(_CV_GL_FLIP + (1.0,))
    return c2w * flip  # scales the columns: camera y and z axes flip, the centre stays


def opencv_to_opengl_c2w(c2w: Float[Tensor, "*batch r 4"]) -> Float[Tensor, "*batch r 4"]:
    """OpenCV camera-to-world to the OpenGL/nerfstudio one (camera y and z axes negated)."""
    return _flip_camera_axes(c2w)


def opengl_to_opencv_c2w(c2w: Float[Tensor, "*batch r 4"]) -> Float[Tensor, "*batch r 4"]:
    """OpenGL/nerfstudio camera-to-world to the OpenCV one (the flip is its own inverse)."""
    return _flip_camera_axes(c2w)


def encode_pose(
    extrinsics: Float[Tensor, "*batch r 4"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    image_hw: tuple[int, int],
) -> Float[Tensor, "*batch 9"]:
    """VGGT's "absT_quaR_FoV" pose encoding.

    Returns ``[t (3), quaternion of R in xyzw (4), fov_h, fov_w]`` with ``t, R`` from the OpenCV
    world-to-camera extrinsics, ``fov_h = 2 atan((H / 2) / fy)`` and ``fov_w = 2 atan((W / 2) / fx)``.
    The principal point is not encoded (it is taken to be the image centre).
    """
    _check_pose("extrinsics", extrinsics)
    _check_last_dims("intrinsics", intrinsics, (3, 3))
    height, width = image_hw
    quat = matrix_to_quat(extrinsics[..., :3, :3], order="xyzw")
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    return torch.cat([extrinsics[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]], dim=-1)


def decode_pose(
    pose_enc: Float[Tensor, "*batch 9"], image_hw: tuple[int, int]
) -> tuple[Float[Tensor, "*batch 3 4"], Float[Tensor, "*batch 3 3"]]:
    """Inverse of :func:`encode_pose`: OpenCV world-to-camera ``[R | t]`` and intrinsics with the
    principal point at the image centre ``(W / 2, H / 2)``."""
    _check_last_dims("pose_enc", pose_enc, (9,))
    height, width = image_hw
    R = quat_to_matrix(pose_enc[..., 3:7], order="xyzw")
    extrinsics = torch.cat([R, pose_enc[..., :3, None]], dim=-1)
    fy = (height / 2) / torch.tan(pose_enc[..., 7] / 2)
    fx = (width / 2) / torch.tan(pose_enc[..., 8] / 2)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    intrinsics = torch.stack(
        [fx, zero, zero + width / 2, zero, fy, zero + height / 2, zero, zero, one], dim=-1
    ).reshape(fx.shape + (3, 3))
    return extrinsics, intrinsics


def project_points(
    points: Float[Tensor, "*batch n 3"],
    extrinsics: Float[Tensor, "*batch r 4"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    eps: float = 1e-8,
) -> tuple[Float[Tensor, "*batch n 2"], Float[Tensor, "*batch n"]]:
    """World points to continuous pixel coordinates ``uv`` (pixel ``(u, v)`` has its centre at
    ``(u + 0.5, v + 0.5)``) and camera z-depth. Points with ``z <= eps`` get a finite ``uv`` far
    outside the image; mask them with ``z > 0``."""
    _check_last_dims("points", points, (3,))
    _check_pose("extrinsics", extrinsics)
    _check_last_dims("intrinsics", intrinsics, (3, 3))
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    cam = points @ R.transpose(-1, -2) + t[..., None, :]
    z = cam[..., 2]
    pix = cam @ intrinsics.transpose(-1, -2)
    uv = pix[..., :2] / z.clamp(min=eps)[..., None]
    return uv, z


def unproject_depth(
    depth: Float[Tensor, "*batch h w"],
    extrinsics: Float[Tensor, "*batch r 4"],
    intrinsics: Float[Tensor, "*batch 3 3"],
) -> Float[Tensor, "*batch h w 3"]:
    """World points of a z-depth map, one per pixel centre ``(u + 0.5, v + 0.5)``."""
    if depth.ndim < 2:
        raise ValueError(f"depth must have shape [..., h, w], got {tuple(depth.shape)}")
    _check_pose("extrinsics", extrinsics)
    _check_last_dims("intrinsics", intrinsics, (3, 3))
    height, width = depth.shape[-2:]
    v, u = torch.meshgrid(
        torch.arange(height, dtype=depth.dtype, device=depth.device) + PIXEL_CENTER,
        torch.arange(width, dtype=depth.dtype, device=depth.device) + PIXEL_CENTER,
        indexing="ij",
    )
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [h, w, 3]
    rays = pixels @ torch.linalg.inv(intrinsics).transpose(-1, -2)[..., None, :, :]  # [..., h, w, 3], z = 1
    cam = rays * depth[..., None]
    c2w = w2c_to_c2w(extrinsics)
    return cam @ c2w[..., None, :3, :3].transpose(-1, -2) + c2w[..., None, None, :3, 3]


def scale_intrinsics(
    intrinsics: Float[Tensor, "*batch 3 3"], scale_x: float, scale_y: float
) -> Float[Tensor, "*batch 3 3"]:
    """Intrinsics after resizing the image by ``(scale_x, scale_y) = (W' / W, H' / H)``.

    With pixel centres at ``+0.5`` the image spans ``[0, W]``, so the first row scales by
    ``scale_x`` and the second by ``scale_y``, with no half-pixel shift.
    """
    _check_last_dims("intrinsics", intrinsics, (3, 3))
    scale = intrinsics.new_tensor([scale_x, scale_y, 1.0])
    return intrinsics * scale[:, None]


def crop_intrinsics(intrinsics: Float[Tensor, "*batch 3 3"], top: float, left: float) -> Float[Tensor, "*batch 3 3"]:
    """Intrinsics after cropping the image at row ``top`` and column ``left`` (principal point moves)."""
    _check_last_dims("intrinsics", intrinsics, (3, 3))
    out = intrinsics.clone()
    out[..., 0, 2] = intrinsics[..., 0, 2] - left
    out[..., 1, 2] = intrinsics[..., 1, 2] - top
    return out


def center_crop_resize_intrinsics(
    intrinsics: Float[Tensor, "*batch 3 3"], in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[Float[Tensor, "*batch 3 3"], tuple[int, int, int, int]]:
    """Intrinsics after the largest centred crop with the aspect ratio of ``out_hw``, resized to it.

    Returns the new intrinsics and the crop box ``(top, left, height, width)`` in input pixels, so
    that images, depth and labels are cut the same way.
    """
    (in_h, in_w), (out_h, out_w) = in_hw, out_hw
    if min(in_h, in_w, out_h, out_w) <= 0:
        raise ValueError(f"image sizes must be positive, got in_hw={in_hw}, out_hw={out_hw}")
    scale = min(in_h / out_h, in_w / out_w)
    crop_h, crop_w = round(out_h * scale), round(out_w * scale)
    top, left = (in_h - crop_h) // 2, (in_w - crop_w) // 2
    cropped = crop_intrinsics(intrinsics, top, left)
    return scale_intrinsics(cropped, out_w / crop_w, out_h / crop_h), (top, left, crop_h, crop_w)
