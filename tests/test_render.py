"""Gaussian rendering: the PyTorch compositor against a dense per-pixel reference, and geometry checks."""

import math

import pytest
import torch

from ff3r_ns.network.cameras import quat_to_matrix
from ff3r_ns.network.render import render_gaussians

SH_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
SH_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))


def dense_reference(means, quats, scales, opacities, sh, features, viewmats, Ks, width, height, background):
    """Every Gaussian at every pixel, depth-sorted, blended with gsplat's rules; SH degree 1 only.

    Written from the 3DGS equations, independently of gsplat's reference code and of the tiles.
    """
    outputs = []
    for cam in range(viewmats.shape[0]):
        R, t, K = viewmats[cam, :3, :3], viewmats[cam, :3, 3], Ks[cam]
        p = means @ R.T + t  # [n, 3] camera coordinates
        x, y, z = p.unbind(-1)
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        mean2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
        rot = quat_to_matrix(quats, order="wxyz")
        cov = rot @ torch.diag_embed(scales**2) @ rot.transpose(1, 2)
        zero = torch.zeros_like(z)
        J = torch.stack([fx / z, zero, -fx * x / z**2, zero, fy / z, -fy * y / z**2], -1).reshape(-1, 2, 3)
        cov2d = J @ R @ cov @ R.T @ J.transpose(1, 2) + 0.3 * torch.eye(2, dtype=means.dtype)
        conic = torch.linalg.inv(cov2d)  # [n, 2, 2]

        # Color from SH degree 1, viewing direction from the camera centre.
        centre = -R.T @ t
        d = means - centre
        dx, dy, dz = (d / d.norm(dim=-1, keepdim=True)).unbind(-1)
        rgb = SH_C0 * sh[:, 0] - SH_C1 * dy[:, None] * sh[:, 1] + SH_C1 * dz[:, None] * sh[:, 2]
        rgb = (rgb - SH_C1 * dx[:, None] * sh[:, 3] + 0.5).clamp(min=0)
        values = torch.cat([rgb, features, z[:, None]], dim=-1)

        rows, cols = torch.arange(height, dtype=means.dtype), torch.arange(width, dtype=means.dtype)
        v, u = torch.meshgrid(rows, cols, indexing="ij")
        pix = torch.stack([u, v], dim=-1).reshape(-1, 1, 2) + 0.5  # [p, 1, 2]
        delta = pix - mean2d[None]  # [p, n, 2]
        sigma = 0.5 * torch.einsum("pni,nij,pnj->pn", delta, conic, delta)
        alpha = (opacities[None] * torch.exp(-sigma)).clamp(max=0.999)
        alpha = torch.where(alpha >= 1 / 255, alpha, 0.0)
        order = torch.argsort(z, stable=True)
        alpha, values = alpha[:, order], values[order]
        after = torch.cumprod(1 - alpha, dim=1)
        before = after / (1 - alpha)
        weights = alpha * before * (after > 1e-4)
        color = weights @ values  # [p, channels]
        acc = weights.sum(dim=1, keepdim=True)
        color[:, :3] = color[:, :3] + (1 - acc) * background[cam]
        color[:, -1:] = color[:, -1:] / acc.clamp(min=1e-10)
        outputs.append((color.reshape(height, width, -1), acc.reshape(height, width, 1), (after <= 1e-4).any()))
    return outputs


def random_scene(n, seed, dtype=torch.float64, num_features=5):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([0.6, 0.45, 0.5], dtype=dtype)
    means[:, 2] += 4
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = 0.02 + 0.15 * torch.rand(n, 3, generator=g, dtype=dtype)
    opacities = 0.2 + 0.8 * torch.rand(n, generator=g, dtype=dtype)
    sh = 0.5 * torch.randn(n, 4, 3, generator=g, dtype=dtype)
    features = torch.randn(n, num_features, generator=g, dtype=dtype)
    return means, quats, scales, opacities, sh, features


def two_cameras(dtype=torch.float64):
    angle = 0.2
    viewmats = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    viewmats[1, :3, :3] = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]], dtype=dtype
    )
    viewmats[1, :3, 3] = torch.tensor([-0.8, 0.1, 0.3], dtype=dtype)
    Ks = torch.tensor([[45.0, 0, 20], [0, 40.0, 17], [0, 0, 1]], dtype=dtype).repeat(2, 1, 1)
    return viewmats, Ks


def test_torch_backend_matches_dense_reference():
    means, quats, scales, opacities, sh, features = random_scene(300, seed=0)
    viewmats, Ks = two_cameras()
    width, height = 40, 34  # not multiples of the 16-pixel tile
    background = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.5, 1.0]], dtype=torch.float64)
    out = render_gaussians(
        means, quats, scales, opacities, sh, features, viewmats, Ks, width, height, sh_degree=1,
        backend="torch", background=background,
    )  # fmt: skip
    reference = dense_reference(means, quats, scales, opacities, sh, features, viewmats, Ks, width, height, background)
    for cam, (color, acc, stopped) in enumerate(reference):
        assert stopped, "the scene should be dense enough to exercise the 1e-4 transmittance stop"
        torch.testing.assert_close(out["rgb"][cam], color[..., :3], atol=1e-9, rtol=0)
        torch.testing.assert_close(out["features"][cam], color[..., 3:-1], atol=1e-9, rtol=0)
        torch.testing.assert_close(out["depth"][cam], color[..., -1:], atol=1e-9, rtol=0)
        torch.testing.assert_close(out["alpha"][cam], acc, atol=1e-9, rtol=0)
    assert 0.05 < out["alpha"].mean() < 0.99


def test_float32_agrees_with_float64():
    scene = random_scene(300, seed=1)
    viewmats, Ks = two_cameras()
    out64 = render_gaussians(*scene, viewmats, Ks, 40, 34, sh_degree=1, backend="torch")
    scene32 = [x.float() for x in scene]
    out32 = render_gaussians(*scene32, viewmats.float(), Ks.float(), 40, 34, sh_degree=1, backend="torch")
    for key in ("rgb", "alpha", "features", "depth"):
        torch.testing.assert_close(out32[key].double(), out64[key], atol=1e-4 if key != "depth" else 1e-3, rtol=0)


def test_flat_wall_renders_its_depth():
    # A wall of flat, overlapping Gaussians at world z = 3, seen from a camera 1 unit behind the origin.
    xs = torch.linspace(-4, 4, 55)
    grid_x, grid_y = torch.meshgrid(xs, xs, indexing="ij")
    n = grid_x.numel()
    means = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1), torch.full((n,), 3.0)], dim=-1)
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    scales = torch.tensor([[0.15, 0.15, 1e-3]]).repeat(n, 1)
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 1.0  # z_cam = z_world + 1
    Ks = torch.tensor([[[30.0, 0, 24], [0, 30.0, 16], [0, 0, 1]]])
    out = render_gaussians(
        means, quats, scales, torch.full((n,), 0.9), torch.rand(n, 1, 3), None, viewmats, Ks, 48, 32, 0, backend="torch"
    )
    assert out["features"] is None
    assert (out["alpha"] > 0.99).all()
    torch.testing.assert_close(out["depth"], torch.full((1, 32, 48, 1), 4.0), atol=1e-5, rtol=0)


def test_single_gaussian_lands_at_the_hand_projected_pixel():
    # Gaussian at (0.5, -0.26, 2), identity camera, fx = fy = 50, (cx, cy) = (32, 24):
    # u = 50 * 0.5 / 2 + 32 = 44.5, v = 50 * -0.26 / 2 + 24 = 17.5: the centre of pixel (row 17, column 44).
    means = torch.tensor([[0.5, -0.26, 2.0]])
    Ks = torch.tensor([[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]])
    out = render_gaussians(
        means, torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.02), torch.tensor([0.8]),
        torch.zeros(1, 1, 3), None, torch.eye(4)[None], Ks, 64, 48, 0, backend="torch",
    )  # fmt: skip
    alpha = out["alpha"][0, ..., 0]
    row, col = divmod(int(alpha.argmax()), 64)
    assert (row, col) == (17, 44)
    # The footprint is centred on that pixel: its neighbours on either side match.
    torch.testing.assert_close(alpha[17, 43], alpha[17, 45])
    torch.testing.assert_close(alpha[16, 44], alpha[18, 44])
    assert alpha[17, 43] < alpha[17, 44]
    torch.testing.assert_close(out["depth"][0, 17, 44], torch.tensor([2.0]))
    # With a uniform grey SH DC of 0, the color is 0.5 wherever the Gaussian is opaque.
    torch.testing.assert_close(out["rgb"][0, 17, 44], torch.full((3,), 0.5) * alpha[17, 44])


def test_shared_feature_renders_as_feature_times_alpha():
    means, quats, scales, opacities, sh, _ = random_scene(200, seed=2, dtype=torch.float32)
    feature = torch.tensor([0.3, -1.2, 2.0, 0.7])
    viewmats, Ks = two_cameras(torch.float32)
    out = render_gaussians(
        means, quats, scales, opacities, sh, feature.expand(200, 4), viewmats, Ks, 40, 34, 1, backend="torch"
    )
    torch.testing.assert_close(out["features"], out["alpha"] * feature, atol=1e-5, rtol=0)


def test_gradients_reach_every_input():
    scene = [x.float().requires_grad_() for x in random_scene(150, seed=3)]
    viewmats, Ks = two_cameras(torch.float32)
    out = render_gaussians(*scene, viewmats, Ks, 40, 34, sh_degree=1, backend="auto")
    g = torch.Generator().manual_seed(0)
    loss = sum((v * torch.randn(v.shape, generator=g)).sum() for v in out.values())
    loss.backward()
    for name, x in zip(["means", "quats", "scales", "opacities", "sh", "features"], scene):
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
        assert x.grad.abs().sum() > 0, name


def test_culls_behind_near_plane_and_checks_inputs():
    means, quats, scales, opacities, sh, features = random_scene(50, seed=4, dtype=torch.float32)
    viewmats, Ks = two_cameras(torch.float32)
    out = render_gaussians(means, quats, scales, opacities, sh, features, viewmats, Ks, 40, 34, 1, near=10.0)
    assert out["alpha"].abs().max() == 0 and out["rgb"].abs().max() == 0
    with pytest.raises(ValueError, match="CUDA"):
        render_gaussians(means, quats, scales, opacities, sh, features, viewmats, Ks, 40, 34, 1, backend="gsplat")
    with pytest.raises(ValueError, match="sh_degree"):
        render_gaussians(means, quats, scales, opacities, sh, features, viewmats, Ks, 40, 34, 2)
    with pytest.raises(ValueError, match="Ks"):
        render_gaussians(means, quats, scales, opacities, sh, features, viewmats, Ks[:1], 40, 34, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's CUDA rasterizer needs a GPU")
def test_torch_backend_matches_gsplat_cuda():
    scene = [x.float().cuda() for x in random_scene(2000, seed=5)]
    viewmats, Ks = (x.float().cuda() for x in two_cameras())
    args = (*scene, viewmats, Ks, 40, 34, 1)
    cuda, torch_ = render_gaussians(*args, backend="gsplat"), render_gaussians(*args, backend="torch")
    for key in ("rgb", "alpha", "features", "depth"):
        torch.testing.assert_close(torch_[key], cuda[key], atol=1e-3, rtol=0)
    # A background per camera (ns-eval and the viewer pass one; gsplat's packed mode cannot take it itself).
    background = torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]], device="cuda")
    cuda_bg = render_gaussians(*args, backend="gsplat", background=background)
    torch_bg = render_gaussians(*args, backend="torch", background=background)
    torch.testing.assert_close(torch_bg["rgb"], cuda_bg["rgb"], atol=1e-3, rtol=0)
    expected = cuda["rgb"] + background[:, None, None] * (1 - cuda["alpha"])
    torch.testing.assert_close(cuda_bg["rgb"], expected)
