"""load_views cuts images, depth, labels, features and intrinsics consistently."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ff3r_ns.data.readers import read_scene
from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.data.views import fit_size, load_views
from ff3r_ns.network.cameras import c2w_to_w2c, project_points, unproject_depth


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    # 80x80 renders cut to 56x42 below: a crop and a resize by a non-integer factor.
    return write_scene(tmp_path_factory.mktemp("views") / "room", RoomConfig(seed=3, num_views=6, image_size=80)).parent


def test_shapes_and_ranges(room):
    scene = read_scene(room)
    views = load_views(scene, [4, 0, 2], (42, 56), depth=True, labels=True, features=True)
    assert views.indices == [4, 0, 2]
    assert views.images.shape == (3, 3, 42, 56) and 0 <= views.images.min() and views.images.max() <= 1
    assert views.depth.shape == (3, 42, 56) and (views.depth > 0).all()
    assert views.labels.shape == (3, 42, 56) and views.labels.dtype == torch.int64
    assert views.features.shape == (3, 512, 21, 28)
    assert views.intrinsics.shape == (3, 3, 3) and views.camera_to_worlds.shape == (3, 4, 4)
    torch.testing.assert_close(views.camera_to_worlds, torch.as_tensor(scene.camera_to_worlds[[4, 0, 2]]).float())


def test_cut_geometry_still_reprojects_onto_the_same_labels(room):
    """Unproject view a with its cut depth and intrinsics, project into view b: labels agree."""
    views = load_views(read_scene(room), [0, 1], (42, 56), depth=True, labels=True)
    w2c = c2w_to_w2c(views.camera_to_worlds.double())[:, :3]
    K = views.intrinsics.double()
    points = unproject_depth(views.depth[0].double(), w2c[0], K[0]).reshape(-1, 3)
    uv, z = project_points(points, w2c[1], K[1])
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (z > 0) & (u >= 0) & (u < 56) & (v >= 0) & (v < 42)
    depth_b = views.depth[1].double()[v[inside], u[inside]]
    visible = (z[inside] - depth_b).abs() < 0.03 * depth_b
    labels_a = views.labels[0].reshape(-1)[inside][visible]
    labels_b = views.labels[1][v[inside][visible], u[inside][visible]]
    assert visible.sum() > 300
    assert (labels_a == labels_b).double().mean() > 0.95


def test_fit_size_keeps_aspect_and_multiple():
    assert fit_size(1080, 1920, 518) == (294, 518)
    h, w = fit_size(480, 640, 448)
    assert h % 14 == 0 and w % 14 == 0 and w == 448 and abs(h / w - 0.75) < 0.02


def test_unposed_scene_has_no_geometry(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((30, 40, 3), 40 * i, np.uint8)).save(tmp_path / f"im{i}.png")
    views = load_views(read_scene(tmp_path), [0, 1, 2], 28, depth=True, labels=True)
    assert views.images.shape == (3, 3, 28, 28)
    assert views.camera_to_worlds is None and views.depth is None and views.labels is None
