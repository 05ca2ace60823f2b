"""Umeyama Sim(3), pose alignment (with its 2-view fallback) and pose errors."""

import math

import numpy as np
import pytest
import torch

from ff3r_ns.eval.alignment import align_poses, apply_sim3, pose_errors, rotation_angle_deg, umeyama_sim3


def _rotation(axis, angle_deg):
    """Rodrigues: rotation of angle_deg about axis."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(angle_deg)
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _random_rotation(rng):
    return _rotation(rng.normal(size=3), rng.uniform(0, 180))


def _random_poses(rng, n):
    poses = np.tile(np.eye(4), (n, 1, 1))
    for pose in poses:
        pose[:3, :3] = _random_rotation(rng)
        pose[:3, 3] = rng.normal(size=3)
    return poses


def _cost(src, dst, s, R, t):
    return float(np.sum((dst - (s * src @ R.T + t)) ** 2))


def test_umeyama_recovers_an_exact_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    R, s, t = _random_rotation(rng), 2.7, rng.normal(size=3)
    dst = s * src @ R.T + t
    s_hat, R_hat, t_hat = umeyama_sim3(torch.from_numpy(src), dst)
    assert s_hat == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(R_hat, R, atol=1e-12)
    np.testing.assert_allclose(t_hat, t, atol=1e-12)
    s1, R1, t1 = umeyama_sim3(src, src @ R.T + t, with_scale=False)
    assert s1 == 1.0
    np.testing.assert_allclose(R1, R, atol=1e-12)
    np.testing.assert_allclose(t1, t, atol=1e-12)


@pytest.mark.parametrize("with_scale", [True, False])
def test_umeyama_is_optimal_under_noise(with_scale):
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 3))
    R, s, t = _random_rotation(rng), (0.4 if with_scale else 1.0), rng.normal(size=3)
    dst = s * src @ R.T + t + rng.normal(scale=0.05, size=src.shape)
    s_hat, R_hat, t_hat = umeyama_sim3(src, dst, with_scale=with_scale)
    assert s_hat == pytest.approx(s, rel=0.05)
    assert rotation_angle_deg(R_hat, R) < 2.0
    assert np.linalg.det(R_hat) == pytest.approx(1.0)
    best = _cost(src, dst, s_hat, R_hat, t_hat)
    for _ in range(200):  # no small perturbation of (s, R, t) does better
        step = 10.0 ** rng.uniform(-6, -2)
        s_p = s_hat * (1 + step * rng.normal()) if with_scale else 1.0
        R_p = _rotation(rng.normal(size=3), math.degrees(step)) @ R_hat
        t_p = t_hat + step * rng.normal(size=3)
        assert _cost(src, dst, s_p, R_p, t_p) >= best - 1e-12


def test_umeyama_never_returns_a_reflection():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(8, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a mirror image: no rotation maps src onto it
    s, R, t = umeyama_sim3(src, dst)
    assert np.linalg.det(R) == pytest.approx(1.0)
    best = _cost(src, dst, s, R, t)
    for _ in range(100):
        R_p = _rotation(rng.normal(size=3), 0.5) @ R
        assert _cost(src, dst, s, R_p, t) >= best - 1e-12


def test_umeyama_rejects_degenerate_input():
    line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-collinear"):
        umeyama_sim3(line, line)
    with pytest.raises(ValueError, match="non-collinear"):
        umeyama_sim3(np.eye(3)[:2], np.eye(3)[:2])
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        umeyama_sim3(np.zeros((4, 2)), np.zeros((4, 2)))


def test_align_poses_undoes_a_similarity():
    rng = np.random.default_rng(3)
    pred = _random_poses(rng, 6)
    sim3 = (0.3, _random_rotation(rng), rng.normal(size=3))
    gt = apply_sim3(pred, sim3)
    aligned, (s, R, t) = align_poses(torch.from_numpy(pred), gt)
    np.testing.assert_allclose(aligned, gt, atol=1e-12)
    assert s == pytest.approx(0.3, rel=1e-12)
    errors = pose_errors(pred, gt)
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in errors.values())


def test_align_two_views_falls_back_to_first_pose_and_baseline():
    rng = np.random.default_rng(4)
    pred, gt = _random_poses(rng, 2), _random_poses(rng, 2)
    aligned, (s, R, t) = align_poses(pred, gt)
    np.testing.assert_allclose(aligned[0], gt[0], atol=1e-12)
    gt_baseline = np.linalg.norm(gt[1, :3, 3] - gt[0, :3, 3])
    assert np.linalg.norm(aligned[1, :3, 3] - aligned[0, :3, 3]) == pytest.approx(gt_baseline, rel=1e-12)
    assert s == pytest.approx(gt_baseline / np.linalg.norm(pred[1, :3, 3] - pred[0, :3, 3]), rel=1e-12)
    # A single view is aligned onto its ground truth.
    single, _ = align_poses(pred[:1], gt[:1])
    np.testing.assert_allclose(single[0], gt[0], atol=1e-12)


def test_collinear_fallback_recovers_a_similarity():
    rng = np.random.default_rng(5)
    line = _random_poses(rng, 3)
    line[:, :3, 3] = np.outer([0.0, 1.0, 3.0], [1.0, 0.5, 0.0])
    gt = apply_sim3(line, (2.0, _random_rotation(rng), np.ones(3)))
    aligned, (s, _, _) = align_poses(line, gt)
    assert s == pytest.approx(2.0, rel=1e-12)
    np.testing.assert_allclose(aligned, gt, atol=1e-12)


def test_pose_errors_by_hand():
    gt = np.tile(np.eye(4), (3, 1, 1))
    pred = gt.copy()
    pred[0, :3, :3] = _rotation([0, 0, 1], 10.0)
    pred[1, :3, :3] = _rotation([1, 0, 0], 30.0)
    pred[0, :3, 3] = [3.0, 4.0, 0.0]
    pred[1, :3, 3] = [0.0, 0.0, 1.0]
    errors = pose_errors(pred, gt, align=False)
    assert errors["rotation_deg_mean"] == pytest.approx(40.0 / 3)
    assert errors["rotation_deg_median"] == pytest.approx(10.0)
    assert errors["translation_mean"] == pytest.approx(2.0)
    assert errors["translation_median"] == pytest.approx(1.0)


def test_rotation_angle_is_accurate_at_both_ends():
    assert rotation_angle_deg(np.eye(3), _rotation([1, 2, 3], 1e-6)) == pytest.approx(1e-6, rel=1e-6)
    assert rotation_angle_deg(np.eye(3), _rotation([1, 2, 3], 180.0)) == pytest.approx(180.0)
    assert rotation_angle_deg(_rotation([0, 1, 0], 20.0), _rotation([0, 1, 0], -25.0)) == pytest.approx(45.0)
