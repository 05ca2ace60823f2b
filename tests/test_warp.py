"""Geometry-guided feature warping (Eq. 2-4) against hand-computed answers."""

import pytest
import torch

from ff3r_ns.network.cameras import quat_to_matrix
from ff3r_ns.training.warp import (
    feature_warp_distance,
    feature_warping_loss,
    relative_pose,
    view_pairs,
    warp_features,
)

# A 16 x 8 camera with f = 8 px and the principal point at the image centre; a fronto-parallel plane at
# Z = 2 and camera c one unit to the right of camera t: disparity f * B / Z = 4 px, u_c = u_t - 4.
H, W, FOCAL, DEPTH, BASELINE = 8, 16, 8.0, 2.0, 1.0
DISPARITY = FOCAL * BASELINE / DEPTH


def _intrinsics(batch: int = 1) -> torch.Tensor:
    K = torch.tensor([[FOCAL, 0.0, W / 2], [0.0, FOCAL, H / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return K.expand(batch, 3, 3).clone()


def _rigid(seed: int) -> torch.Tensor:
    """A random 4x4 rigid transform."""
    generator = torch.Generator().manual_seed(seed)
    R = quat_to_matrix(torch.randn(4, generator=generator, dtype=torch.float64))
    G = torch.eye(4, dtype=torch.float64)
    G[:3, :3], G[:3, 3] = R, torch.randn(3, generator=generator, dtype=torch.float64)
    return G


def _stereo_cameras(world_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera of t (at the origin) and c (at x = BASELINE), in a random world frame.

    Re-expressing both cameras in another world frame (``w2c @ G^-1``) leaves the relative pose, hence
    the warp, unchanged; this makes the test exercise the relative-pose construction.
    """
    w2c_t = torch.eye(4, dtype=torch.float64)
    w2c_c = torch.eye(4, dtype=torch.float64)
    w2c_c[0, 3] = -BASELINE
    G_inv = torch.linalg.inv(_rigid(world_seed))
    return (w2c_t @ G_inv)[None, :3], (w2c_c @ G_inv)[None, :3]


def _coordinate_map(h: int, w: int) -> torch.Tensor:
    """Features (u + 0.5, v + 0.5, 1): sampling it reveals where it was sampled. [1, 3, h, w]"""
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.stack([u + 0.5, v + 0.5, torch.ones_like(u)])[None]


def _plane(value: float = DEPTH) -> torch.Tensor:
    return torch.full((1, H, W), value, dtype=torch.float64)


def test_relative_pose_maps_camera_t_to_camera_c():
    w2c_t, w2c_c = _rigid(1)[None, :3], _rigid(2)[None, :3]
    point_t = torch.tensor([0.3, -0.2, 1.7], dtype=torch.float64)
    world = torch.linalg.solve(w2c_t[0, :, :3], point_t - w2c_t[0, :, 3])
    T = relative_pose(w2c_t, w2c_c)[0]
    assert torch.allclose(T[:, :3] @ point_t + T[:, 3], w2c_c[0, :, :3] @ world + w2c_c[0, :, 3])


def test_identity_pose_warps_a_map_onto_itself():
    """Same camera for t and c: every pixel lands on its own centre, so the warp is the identity.

    No border pixel is lost: the mask accepts projections in the whole image ``[0, W] x [0, H]`` and
    pixel centres lie half a pixel inside it.
    """
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, H, W, generator=generator, dtype=torch.float64)
    depth = 1 + torch.rand(2, H, W, generator=generator, dtype=torch.float64)
    w2c = torch.stack([_rigid(3)[:3], _rigid(4)[:3]])
    K = _intrinsics(2)
    warped, valid = warp_features(features, depth, K, K, w2c, w2c, depth_c=depth)
    assert valid.all()
    assert torch.allclose(warped, features, atol=1e-9)
    distance = feature_warp_distance(features, features, depth, K, K, w2c, w2c, depth_c=depth)
    assert torch.allclose(distance, torch.zeros(2, dtype=torch.float64), atol=1e-9)


def test_stereo_plane_samples_the_hand_computed_pixel_and_drops_out_of_bounds():
    w2c_t, w2c_c = _stereo_cameras()
    K = _intrinsics()
    warped, valid = warp_features(_coordinate_map(H, W), _plane(), K, K, w2c_t, w2c_c, depth_c=_plane())
    columns = torch.arange(W, dtype=torch.float64)
    # u_c + 0.5 = (u_t + 0.5) - f B / Z; columns u_t < 4 project left of view c (u_c < 0).
    expected_valid = (columns >= DISPARITY).expand(H, W)
    assert torch.equal(valid[0], expected_valid)
    expected_u = (columns + 0.5 - DISPARITY).expand(H, W)
    expected_v = (torch.arange(H, dtype=torch.float64)[:, None] + 0.5).expand(H, W)
    assert torch.allclose(warped[0, 0][expected_valid], expected_u[expected_valid], atol=1e-6)
    assert torch.allclose(warped[0, 1][expected_valid], expected_v[expected_valid], atol=1e-6)


def test_half_resolution_features_scale_the_disparity():
    """Features at half the depth resolution: the disparity in feature pixels halves to 2."""
    w2c_t, w2c_c = _stereo_cameras()
    K = _intrinsics()
    warped, valid = warp_features(_coordinate_map(H // 2, W // 2), _plane(), K, K, w2c_t, w2c_c, depth_c=_plane())
    assert valid.shape == (1, H // 2, W // 2)
    columns = torch.arange(W // 2, dtype=torch.float64)
    half_disparity = DISPARITY / 2
    assert torch.equal(valid[0], (columns >= half_disparity).expand(H // 2, W // 2))
    assert torch.allclose(warped[0, 0][valid[0]], (columns + 0.5 - half_disparity).expand(H // 2, W // 2)[valid[0]])


def test_occluded_pixels_fail_the_depth_check():
    """An occluder at depth 1 in columns 8-10 of view c hides the plane points that t sees there."""
    w2c_t, w2c_c = _stereo_cameras()
    K = _intrinsics()
    depth_c = _plane()
    depth_c[:, :, 8:11] = 1.0
    _, without_check = warp_features(_coordinate_map(H, W), _plane(), K, K, w2c_t, w2c_c)
    _, valid = warp_features(_coordinate_map(H, W), _plane(), K, K, w2c_t, w2c_c, depth_c=depth_c)
    occluded = torch.zeros(H, W, dtype=torch.bool)
    occluded[:, 8 + int(DISPARITY) : 11 + int(DISPARITY)] = True  # t columns 12-14 land on c columns 8-10
    assert torch.equal(without_check[0], (torch.arange(W) >= DISPARITY).expand(H, W))
    assert torch.equal(valid[0], without_check[0] & ~occluded)


def test_no_valid_pixel_gives_zero_without_nan():
    """Camera c faces away from the plane (180 degrees about y): every point is behind it."""
    w2c_t = torch.eye(4, dtype=torch.float64)[None, :3]
    w2c_c = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64))[None, :3]
    features = torch.randn(1, 4, H, W, dtype=torch.float64, requires_grad=True)
    depth = _plane().requires_grad_(True)
    K = _intrinsics()
    distance = feature_warp_distance(features, features, depth, K, K, w2c_t, w2c_c, depth_c=_plane())
    assert distance.item() == 0.0
    distance.sum().backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(depth.grad).all()


def test_gradients_reach_features_and_depth():
    generator = torch.Generator().manual_seed(1)
    w2c_t, w2c_c = _stereo_cameras()
    K = _intrinsics()
    feat_t = torch.randn(1, 4, H, W, generator=generator, dtype=torch.float64, requires_grad=True)
    feat_c = torch.randn(1, 4, H, W, generator=generator, dtype=torch.float64, requires_grad=True)
    depth_t = (DEPTH + 0.1 * torch.rand(1, H, W, generator=generator, dtype=torch.float64)).requires_grad_(True)
    distance = feature_warp_distance(feat_t, feat_c, depth_t, K, K, w2c_t, w2c_c, depth_c=_plane())
    distance.sum().backward()
    for tensor in (feat_t, feat_c, depth_t):
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def _two_view_batch():
    generator = torch.Generator().manual_seed(2)
    w2c_t, w2c_c = _stereo_cameras(world_seed=5)
    features = torch.randn(1, 2, 3, H, W, generator=generator, dtype=torch.float64)
    depths = DEPTH + 0.05 * torch.rand(1, 2, H, W, generator=generator, dtype=torch.float64)
    extrinsics = torch.stack([w2c_t, w2c_c], dim=1)
    intrinsics = _intrinsics(2)[None]
    return features, depths, extrinsics, intrinsics


def test_eq4_sums_both_directions():
    features, depths, extrinsics, intrinsics = _two_view_batch()

    def distance(t: int, c: int) -> torch.Tensor:
        return feature_warp_distance(
            features[:, t], features[:, c], depths[:, t], intrinsics[:, t], intrinsics[:, c],
            extrinsics[:, t], extrinsics[:, c], depth_c=depths[:, c],
        )  # fmt: skip

    expected = distance(0, 1) + distance(1, 0)
    assert expected.item() > 0
    assert torch.allclose(feature_warping_loss(features, depths, extrinsics, intrinsics, pairs=[(0, 1)]), expected)
    assert torch.allclose(feature_warping_loss(features, depths, extrinsics, intrinsics), expected)


def _cameras_on_a_line(order: list[int]) -> torch.Tensor:
    """Cameras at x = order[i] (i.e. shuffled along a line), looking down +z. [1, v, 3, 4]"""
    w2c = torch.eye(4)[:3].repeat(len(order), 1, 1)
    w2c[:, 0, 3] = -torch.tensor(order, dtype=torch.float32)
    return w2c[None]


def test_default_pairs_are_all_pairs_for_few_views():
    pairs = view_pairs(_cameras_on_a_line([0, 1, 2, 3]))
    assert sorted(map(tuple, pairs[0].tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_sampled_pairs_join_neighbouring_views():
    order = [5, 0, 7, 2, 6, 1, 4, 3]  # view i sits at x = order[i]
    extrinsics = _cameras_on_a_line(order)
    pairs = view_pairs(extrinsics, num_pairs=6, generator=torch.Generator().manual_seed(0))
    assert pairs.shape == (1, 6, 2)
    unordered = {frozenset(pair) for pair in pairs[0].tolist()}
    assert len(unordered) == 6
    for pair in unordered:
        t, c = tuple(pair)
        assert abs(order[t] - order[c]) <= 2  # each view's 2 nearest neighbours are within 2 on the line
    again = view_pairs(extrinsics, num_pairs=6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pairs, again)
    assert view_pairs(extrinsics).shape == (1, 8, 2)  # default for many views: v sampled pairs


def test_pair_errors_are_explained():
    extrinsics = _cameras_on_a_line([0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="repeated"):
        view_pairs(extrinsics, pairs=[(0, 1), (1, 0)])
    with pytest.raises(ValueError, match="different views"):
        view_pairs(extrinsics, pairs=[(2, 2)])
    with pytest.raises(ValueError, match=r"num_pairs=7 must be in \[1, 6\]"):
        view_pairs(extrinsics, num_pairs=7)
    with pytest.raises(ValueError, match="not both"):
        view_pairs(extrinsics, pairs=[(0, 1)], num_pairs=1)
    with pytest.raises(ValueError, match="at least 2 views"):
        view_pairs(extrinsics[:, :1])
