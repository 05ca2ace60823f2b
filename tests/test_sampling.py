"""Training-view sampling, center crop with exact intrinsics, and the sparse and dense evaluation splits."""

import numpy as np
import pytest
import torch

from ff3r_ns.data.sampling import (
    DENSE_CONTEXT_VIEWS,
    TrainViewSamplingConfig,
    center_crop_box,
    center_crop_resize,
    dense_split,
    evenly_spaced,
    farthest_point_sampling,
    sample_training_views,
    sparse_split,
)

# ---------------------------------------------------------------------------- training views


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="min_views"):
        TrainViewSamplingConfig(min_views=1)
    with pytest.raises(ValueError, match="max_views"):
        TrainViewSamplingConfig(min_views=4, max_views=3)
    with pytest.raises(ValueError, match="min_gap"):
        TrainViewSamplingConfig(min_gap=10, max_gap=5)


def test_training_views_are_distinct_inside_the_gap_and_within_bounds():
    config = TrainViewSamplingConfig(max_views=16, min_views=2, min_gap=20, max_gap=60)
    rng = np.random.default_rng(0)
    counts, gaps = set(), set()
    for _ in range(300):
        views = sample_training_views(200, config, rng)
        assert len(views) == len(set(views))
        assert all(0 <= v < 200 for v in views)
        assert 2 <= len(views) <= 16
        counts.add(len(views))
        gap = max(views) - min(views)
        assert max(20, len(views) - 1) <= gap <= 60
        gaps.add(gap)
    assert counts == set(range(2, 17))  # every view count is reachable
    assert min(gaps) == 20 and max(gaps) == 60


def test_training_views_fixed_count_sorted_and_reproducible():
    config = TrainViewSamplingConfig(max_views=8, random_num_views=False, shuffle=False, min_gap=30, max_gap=30)
    views = sample_training_views(100, config, np.random.default_rng(3))
    assert len(views) == 8 and views == sorted(views) and views[-1] - views[0] == 30
    assert views == sample_training_views(100, config, np.random.default_rng(3))


def test_training_views_are_shuffled():
    config = TrainViewSamplingConfig(random_num_views=False)
    rng = np.random.default_rng(1)
    samples = [sample_training_views(300, config, rng) for _ in range(20)]
    assert any(s != sorted(s) for s in samples)


def test_short_scene_clamps_without_duplicates():
    config = TrainViewSamplingConfig(max_views=16, random_num_views=False)
    rng = np.random.default_rng(2)
    for num_frames in (2, 3, 5, 15):
        views = sample_training_views(num_frames, config, rng)
        assert sorted(views) == list(range(num_frames))
    with pytest.raises(ValueError, match="at least 2 frames"):
        sample_training_views(1, config, rng)


# ---------------------------------------------------------------------------- crop and resize


def test_crop_box_and_intrinsics_by_hand():
    assert center_crop_box(480, 640, 448) == (0, 80, 480, 480)
    assert center_crop_box(640, 480, (224, 448)) == (200, 0, 240, 480)
    K = np.array([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    image, K2 = center_crop_resize(np.zeros((480, 640, 3), np.float32), K, 448)
    assert image.shape == (448, 448, 3) and image.dtype == np.float32
    s = 448 / 480
    np.testing.assert_allclose(K2, [[500 * s, 0, 240 * s], [0, 510 * s, 240 * s], [0, 0, 1]], rtol=1e-12)
    np.testing.assert_allclose(K2[:2, 2], [224.0, 224.0])
    assert K[0, 2] == 320.0  # input untouched


@pytest.mark.parametrize("size", [64, (40, 96), (120, 50)])
def test_intrinsics_follow_the_resampled_pixels(size):
    """Each output pixel centre, back-projected with the new K and projected with the old one, lands on
    the input coordinate that the resampled image shows there (a ramp of input pixel-centre coordinates)."""
    height, width = 90, 160
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    ramp = np.stack([xs, ys], axis=-1)
    K = np.array([[150.0, 0.0, 83.0], [0.0, 140.0, 41.0], [0.0, 0.0, 1.0]])
    for interpolation, tolerance in (("nearest", 0.5 + 1e-9), ("antialias", 0.1)):
        out, K2 = center_crop_resize(ramp, K, size, interpolation=interpolation)
        out_h, out_w = out.shape[:2]
        # Interior output pixels only: at the border the antialias filter is clipped.
        v, u = np.meshgrid(np.arange(3, out_h - 3), np.arange(3, out_w - 3), indexing="ij")
        centres = np.stack([u + 0.5, v + 0.5, np.ones(u.shape)], axis=-1)
        projected = centres @ (K @ np.linalg.inv(K2)).T
        seen = out[v, u]
        # nearest: the centre falls inside the chosen input pixel. antialias: the discretised filter
        # (PIL-style) wobbles around a linear ramp by < 0.1 input pixel, with no systematic shift.
        error = projected[..., :2] - seen
        assert np.abs(error).max() <= tolerance
        if interpolation == "antialias":
            assert np.abs(error.mean(axis=(0, 1))).max() < 2e-3
    np.testing.assert_allclose(projected[..., 2], 1.0)


def test_nearest_picks_the_pixel_under_each_centre_and_keeps_dtype():
    labels = np.arange(8 * 12, dtype=np.uint8).reshape(8, 12)
    out, _ = center_crop_resize(labels, None, (4, 6), interpolation="nearest")
    np.testing.assert_array_equal(out, labels[1::2, 1::2])
    assert out.dtype == np.uint8
    # Wider input: the 8x8 centre crop starts at column 2.
    out, _ = center_crop_resize(labels, None, 4, interpolation="nearest")
    np.testing.assert_array_equal(out, labels[1::2, 2:10][:, 1::2])
    depth = torch.from_numpy(labels.astype(np.float32))
    out_t, _ = center_crop_resize(depth, None, 4, interpolation="nearest")
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_array_equal(out_t.numpy(), labels[1::2, 2:10][:, 1::2])


def test_torch_and_numpy_agree_and_uint8_stays_uint8():
    rng = np.random.default_rng(0)
    image = rng.random((50, 70, 3)).astype(np.float32)
    K = torch.tensor([[60.0, 0.0, 35.0], [0.0, 60.0, 25.0], [0.0, 0.0, 1.0]])
    out_np, K_np = center_crop_resize(image, K.numpy(), 32)
    out_t, K_t = center_crop_resize(torch.from_numpy(image), K, 32)
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-6)
    np.testing.assert_allclose(K_t.numpy(), K_np, atol=1e-5)
    assert out_np.min() >= 0 and out_np.max() <= 1
    out_u8, none = center_crop_resize((image * 255).astype(np.uint8), None, (16, 24))
    assert out_u8.dtype == np.uint8 and out_u8.shape == (16, 24, 3) and none is None
    with pytest.raises(ValueError, match="interpolation"):
        center_crop_resize(image, None, 8, interpolation="bicubic")


# ---------------------------------------------------------------------------- evaluation splits


def test_evenly_spaced():
    np.testing.assert_array_equal(evenly_spaced(10, 4), [0, 3, 6, 9])
    for n in range(1, 80):
        for k in {1, min(2, n), n // 2 + 1, n}:
            idx = evenly_spaced(n, k)
            assert len(np.unique(idx)) == k and idx[0] == 0 and (k == 1 or idx[-1] == n - 1)
    with pytest.raises(ValueError):
        evenly_spaced(3, 4)


def test_sparse_split_interval_one():
    context, target = sparse_split(31, 16)  # stride 1: Uni3R's every-second-frame split
    assert context == list(range(0, 31, 2)) and target == list(range(1, 30, 2))
    context, target = sparse_split(100, 2)  # widest span: stride 49
    assert context == [0, 98] and target == [49]
    context, target = sparse_split(100, 6, stride=3, start=5)
    assert context == [5, 11, 17, 23, 29, 35] and target == [8, 14, 20, 26, 32]
    context, target = sparse_split(61, 6)
    assert context == [0, 12, 24, 36, 48, 60] and target == [6, 18, 30, 42, 54]
    with pytest.raises(ValueError, match="needs at least 31 frames"):
        sparse_split(30, 16)
    with pytest.raises(ValueError, match="needs at least"):
        sparse_split(20, 2, stride=10)


def _fps_brute_force(points, k, start):
    picked = [start]
    while len(picked) < k:
        best, best_distance = None, -1.0
        for i in range(len(points)):
            if i in picked:
                continue
            distance = min(float(np.sqrt(np.sum((points[i] - points[j]) ** 2))) for j in picked)
            if distance > best_distance:
                best, best_distance = i, distance
        picked.append(best)
    return picked


def test_farthest_point_sampling_matches_brute_force():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(60, 3))
    for start in (0, 17):
        assert farthest_point_sampling(points, 20, start=start).tolist() == _fps_brute_force(points, 20, start)
    duplicated = np.zeros((5, 3))
    assert sorted(farthest_point_sampling(duplicated, 5).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        farthest_point_sampling(points, 61)


def test_dense_split_counts_and_structure():
    rng = np.random.default_rng(0)
    centres = np.cumsum(rng.normal(size=(300, 3)), axis=0)
    targets_seen = set()
    for num_sampled, num_context in DENSE_CONTEXT_VIEWS.items():
        context, target = dense_split(300, centres, num_sampled)
        assert len(context) == num_context and len(target) == 8
        assert context == sorted(context) and target == sorted(target)
        assert not set(context) & set(target)
        assert min(context) < min(target) and max(target) < max(context)  # targets are interpolated
        targets_seen.add(tuple(target))
    assert len(targets_seen) == 1  # one target set for the three settings

    pool = sorted(farthest_point_sampling(centres, 72, 0).tolist())
    context, target = dense_split(300, centres, 72)
    assert sorted(context + target) == pool and target == pool[8:71:8]


def test_dense_split_uses_space_not_time_when_poses_are_known():
    # The camera idles near the origin for 200 frames, then walks away for 100 frames.
    rng = np.random.default_rng(1)
    idle = rng.normal(scale=1e-3, size=(200, 3))
    walk = np.linspace([0.1, 0, 0], [10, 0, 0], 100)
    centres = np.concatenate([idle, walk])
    context, target = dense_split(300, centres, 72)
    assert sum(i < 200 for i in context + target) <= 3
    context, target = dense_split(300, None, 72)  # no poses: uniform in time
    np.testing.assert_array_equal(sorted(context + target), evenly_spaced(300, 72))


def test_dense_split_errors():
    with pytest.raises(ValueError, match="only 50 frames"):
        dense_split(50)
    with pytest.raises(ValueError, match="num_sampled"):
        dense_split(100, num_sampled=64)
    with pytest.raises(ValueError, match="camera_centers"):
        dense_split(100, np.zeros((99, 3)))
