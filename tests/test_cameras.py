"""Camera conventions: pose encoding, quaternions, rigid inverses, OpenCV/OpenGL, projection."""

import math

import pytest
import torch

from ff3r_ns.network.cameras import (
    c2w_to_w2c,
    center_crop_resize_intrinsics,
    crop_intrinsics,
    decode_pose,
    encode_pose,
    matrix_to_quat,
    opencv_to_opengl_c2w,
    opengl_to_opencv_c2w,
    project_points,
    quat_to_matrix,
    scale_intrinsics,
    to_4x4,
    unproject_depth,
    w2c_to_c2w,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)

DTYPE = torch.float64


def rodrigues(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle, written independently of the module under test."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(axis.shape[:-1] + (3, 3))
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    return torch.eye(3, dtype=axis.dtype) + s * skew + (1 - c) * skew @ skew


def random_rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    axis = torch.randn(n, 3, generator=generator, dtype=DTYPE)
    angle = torch.rand(n, generator=generator, dtype=DTYPE) * math.pi
    return rodrigues(axis, angle)


def random_w2c(n: int, generator: torch.Generator) -> torch.Tensor:
    t = torch.randn(n, 3, 1, generator=generator, dtype=DTYPE)
    return torch.cat([random_rotations(n, generator), t], dim=-1)


def test_quat_to_matrix_matches_axis_angle_in_both_orders():
    g = torch.Generator().manual_seed(0)
    axis = torch.randn(64, 3, generator=g, dtype=DTYPE)
    angle = torch.rand(64, generator=g, dtype=DTYPE) * 2 * math.pi
    unit = axis / axis.norm(dim=-1, keepdim=True)
    wxyz = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * unit], dim=-1)
    expected = rodrigues(axis, angle)
    torch.testing.assert_close(quat_to_matrix(wxyz, order="wxyz"), expected)
    torch.testing.assert_close(quat_to_matrix(wxyz_to_xyzw(wxyz), order="xyzw"), expected)
    # Unnormalized quaternions describe the same rotation.
    torch.testing.assert_close(quat_to_matrix(3.0 * wxyz, order="wxyz"), expected)


@pytest.mark.parametrize("order", ["xyzw", "wxyz"])
def test_quaternion_round_trip_with_canonical_sign(order):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(500, 4, generator=g, dtype=DTYPE)
    q = q / q.norm(dim=-1, keepdim=True)
    w = q[:, 3:] if order == "xyzw" else q[:, :1]
    q = torch.where(w < 0, -q, q)
    back = matrix_to_quat(quat_to_matrix(q, order=order), order=order)
    torch.testing.assert_close(back, q)
    w_back = back[:, 3] if order == "xyzw" else back[:, 0]
    assert (w_back >= 0).all()
    assert xyzw_to_wxyz(wxyz_to_xyzw(q)).equal(q)


@pytest.mark.parametrize("offset", [0.0, 1e-7, 1e-4])
def test_matrix_to_quat_near_180_degrees(offset):
    g = torch.Generator().manual_seed(2)
    axis = torch.randn(200, 3, generator=g, dtype=DTYPE)
    angle = torch.full((200,), math.pi - offset, dtype=DTYPE)
    R = rodrigues(axis, angle)
    q = matrix_to_quat(R, order="wxyz")
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(200, dtype=DTYPE))
    torch.testing.assert_close(quat_to_matrix(q, order="wxyz"), R, atol=1e-12, rtol=0)
    # At 180 degrees w = 0 and q, -q are both canonical: compare up to sign.
    unit = axis / axis.norm(dim=-1, keepdim=True)
    expected = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * unit], dim=-1)
    torch.testing.assert_close((q * expected).sum(-1).abs(), torch.ones(200, dtype=DTYPE))


def test_matrix_to_quat_identity_and_float32():
    assert matrix_to_quat(torch.eye(3), order="xyzw").tolist() == [0.0, 0.0, 0.0, 1.0]
    R = random_rotations(100, torch.Generator().manual_seed(3)).float()
    torch.testing.assert_close(quat_to_matrix(matrix_to_quat(R)), R, atol=2e-6, rtol=0)


def test_pose_encoding_by_hand():
    # 90 degrees about +y: quaternion (x, y, z, w) = (0, sin 45, 0, cos 45).
    R = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], dtype=DTYPE)
    extrinsics = torch.cat([R, torch.tensor([[1.0], [2.0], [3.0]], dtype=DTYPE)], dim=-1)
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 200.0, 40.0], [0.0, 0.0, 1.0]], dtype=DTYPE)
    enc = encode_pose(extrinsics, K, image_hw=(80, 100))
    s = math.sqrt(0.5)
    # fov_h = 2 atan((80 / 2) / 200), fov_w = 2 atan((100 / 2) / 100)
    expected = [1.0, 2.0, 3.0, 0.0, s, 0.0, s, 2 * math.atan(0.2), 2 * math.atan(0.5)]
    torch.testing.assert_close(enc, torch.tensor(expected, dtype=DTYPE))
    extrinsics_back, K_back = decode_pose(enc, image_hw=(80, 100))
    torch.testing.assert_close(extrinsics_back, extrinsics)
    torch.testing.assert_close(K_back, K)


def test_pose_encoding_round_trips():
    g = torch.Generator().manual_seed(4)
    extrinsics = random_w2c(12, g).reshape(3, 4, 3, 4)
    f = 100 + 400 * torch.rand(3, 4, 2, generator=g, dtype=DTYPE)
    K = torch.zeros(3, 4, 3, 3, dtype=DTYPE)
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = f[..., 0], f[..., 1], 320, 240, 1
    enc = encode_pose(extrinsics, K, image_hw=(480, 640))
    assert enc.shape == (3, 4, 9)
    extrinsics_back, K_back = decode_pose(enc, image_hw=(480, 640))
    torch.testing.assert_close(extrinsics_back, extrinsics)
    torch.testing.assert_close(K_back, K)
    torch.testing.assert_close(encode_pose(extrinsics_back, K_back, image_hw=(480, 640)), enc)
    # A 4x4 extrinsic encodes the same.
    torch.testing.assert_close(encode_pose(to_4x4(extrinsics), K, image_hw=(480, 640)), enc)


def test_w2c_c2w_inverse():
    w2c = random_w2c(20, torch.Generator().manual_seed(5))
    c2w = w2c_to_c2w(w2c)
    assert c2w.shape == (20, 3, 4)
    torch.testing.assert_close(to_4x4(c2w) @ to_4x4(w2c), torch.eye(4, dtype=DTYPE).expand(20, 4, 4))
    torch.testing.assert_close(c2w_to_w2c(c2w), w2c)
    # Camera centre = -R^T t, and 4x4 inputs stay 4x4.
    centre = -(w2c[:, :, :3].transpose(1, 2) @ w2c[:, :, 3:]).squeeze(-1)
    torch.testing.assert_close(c2w[:, :, 3], centre)
    torch.testing.assert_close(w2c_to_c2w(to_4x4(w2c)), to_4x4(c2w))


def test_opencv_opengl_c2w():
    c2w = w2c_to_c2w(random_w2c(10, torch.Generator().manual_seed(6)))
    gl = opencv_to_opengl_c2w(c2w)
    torch.testing.assert_close(gl[:, :, 0], c2w[:, :, 0])  # x right in both
    torch.testing.assert_close(gl[:, :, 1], -c2w[:, :, 1])  # y down -> y up
    torch.testing.assert_close(gl[:, :, 2], -c2w[:, :, 2])  # OpenGL looks down -z
    torch.testing.assert_close(gl[:, :, 3], c2w[:, :, 3])  # same centre
    torch.testing.assert_close(opengl_to_opencv_c2w(gl), c2w)
    torch.testing.assert_close(opencv_to_opengl_c2w(to_4x4(c2w)), to_4x4(gl))


def test_projection_by_hand():
    R = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], dtype=DTYPE)
    w2c = torch.cat([R, torch.tensor([[1.0], [2.0], [3.0]], dtype=DTYPE)], dim=-1)
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 200.0, 40.0], [0.0, 0.0, 1.0]], dtype=DTYPE)
    # x_cam = R (1, 2, 3) + t = (3, 2, -1) + (1, 2, 3) = (4, 4, 2)
    # u = 100 * 4 / 2 + 50 = 250, v = 200 * 4 / 2 + 40 = 440, z = 2
    uv, z = project_points(torch.tensor([[1.0, 2.0, 3.0]], dtype=DTYPE), w2c, K)
    torch.testing.assert_close(uv, torch.tensor([[250.0, 440.0]], dtype=DTYPE))
    torch.testing.assert_close(z, torch.tensor([2.0], dtype=DTYPE))


def test_unproject_uses_pixel_centres_by_hand():
    # 4 x 2 image, principal point at the image centre (2, 1), identity pose.
    K = torch.tensor([[10.0, 0.0, 2.0], [0.0, 20.0, 1.0], [0.0, 0.0, 1.0]], dtype=DTYPE)
    depth = torch.full((2, 4), 5.0, dtype=DTYPE)
    points = unproject_depth(depth, torch.eye(4, dtype=DTYPE)[:3], K)
    assert points.shape == (2, 4, 3)
    # Pixel (u=1, v=0) has its centre at (1.5, 0.5): x = 5 (1.5 - 2) / 10, y = 5 (0.5 - 1) / 20.
    torch.testing.assert_close(points[0, 1], torch.tensor([-0.25, -0.125, 5.0], dtype=DTYPE))
    # Pixels (1, 0) and (2, 1) straddle the principal point symmetrically.
    torch.testing.assert_close(points[1, 2, :2], -points[0, 1, :2])


def test_unproject_then_project_is_identity():
    g = torch.Generator().manual_seed(7)
    w2c = random_w2c(3, g)
    K = torch.tensor([[60.0, 0.0, 16.0], [0.0, 50.0, 12.0], [0.0, 0.0, 1.0]], dtype=DTYPE).expand(3, 3, 3)
    depth = 1 + 4 * torch.rand(3, 24, 32, generator=g, dtype=DTYPE)
    points = unproject_depth(depth, w2c, K)
    uv, z = project_points(points.reshape(3, -1, 3), w2c, K)
    v, u = torch.meshgrid(torch.arange(24, dtype=DTYPE), torch.arange(32, dtype=DTYPE), indexing="ij")
    centres = torch.stack([u, v], dim=-1).reshape(-1, 2) + 0.5
    torch.testing.assert_close(uv, centres.expand(3, -1, -1))
    torch.testing.assert_close(z, depth.reshape(3, -1))


def test_intrinsics_follow_crop_and_resize():
    K = torch.tensor([[500.0, 0.0, 330.0], [0.0, 480.0, 250.0], [0.0, 0.0, 1.0]], dtype=DTYPE)
    points = torch.randn(50, 3, generator=torch.Generator().manual_seed(8), dtype=DTYPE) + torch.tensor([0, 0, 4.0])
    eye = torch.eye(4, dtype=DTYPE)[:3]
    uv, _ = project_points(points, eye, K)
    K_new, (top, left, crop_h, crop_w) = center_crop_resize_intrinsics(K, (480, 640), (224, 224))
    assert (top, left, crop_h, crop_w) == (0, 80, 480, 480)
    uv_new, _ = project_points(points, eye, K_new)
    # The continuous coordinate of a point moves with the crop and scales with the resize.
    expected = (uv - torch.tensor([left, top], dtype=DTYPE)) * torch.tensor([224 / crop_w, 224 / crop_h], dtype=DTYPE)
    torch.testing.assert_close(uv_new, expected)
    torch.testing.assert_close(scale_intrinsics(crop_intrinsics(K, 0, 80), 224 / 480, 224 / 480), K_new)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="extrinsics"):
        encode_pose(torch.zeros(3, 3), torch.eye(3), (2, 2))
    with pytest.raises(ValueError, match="order"):
        quat_to_matrix(torch.zeros(4), order="xyz")
    with pytest.raises(ValueError, match="pose_enc"):
        decode_pose(torch.zeros(8), (2, 2))
