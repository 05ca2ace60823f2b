"""``ns-render`` on an ``ns-train ff3r`` run: interpolate, spiral and camera-path videos.

Each command runs as a subprocess on the tiny room of ``runs.py`` (session fixtures); the video is
decoded and its frames compared with direct renders of the same cameras, built the way ns-render builds
them, by the run's pipeline loaded in this process. H.264 (4:2:0 chroma) is lossy: frames match within a
few levels of 255, while a neighbouring camera's render does not.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mediapy
import numpy as np
import pytest
import torch
from nerfstudio.cameras.camera_paths import get_interpolated_camera_path, get_path_from_json, get_spiral_path
from nerfstudio.cameras.cameras import Cameras
from runs import run_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None,
        reason="ffmpeg is not installed (ns-render writes videos with it): bash scripts/setup.sh installs the "
        "Debian package, or run apt-get install ffmpeg",
    ),
]

VIEW = 56
"""Side of the run's views: the room's 64 px cut to a multiple of the tiny network's 14 px patches."""
MATCH = 6 / 255
"""Mean absolute difference (in [0, 1]) a decoded frame may have from its direct render."""


def direct_render(pipeline, cameras: Cameras, index: int) -> np.ndarray:
    """The model's rgb at ``cameras[index]``, as ns-render takes it, [h, w, 3] in [0, 1]."""
    with torch.no_grad():
        outputs = pipeline.model.get_outputs_for_camera(cameras[index : index + 1].to(pipeline.device))
    return outputs["rgb"].cpu().numpy()


def decode(path: Path) -> np.ndarray:
    """The frames of a video, [n, h, w, 3] in [0, 1]."""
    assert path.is_file() and path.stat().st_size > 0, f"no video at {path}"
    return np.asarray(mediapy.read_video(str(path)), dtype=np.float64) / 255


def check_video(path: Path, pipeline, cameras: Cameras) -> np.ndarray:
    """The video has one non-constant frame per camera; its first and last frames are those cameras' renders."""
    frames = decode(path)
    assert frames.shape == (len(cameras), VIEW, VIEW, 3)
    assert all(frame.std() > 0.02 for frame in frames), [float(frame.std()) for frame in frames]
    for index in (0, len(cameras) - 1):
        expected = direct_render(pipeline, cameras, index)
        error = np.abs(frames[index] - expected).mean()
        assert error < MATCH, f"frame {index} differs from its direct render by {error * 255:.1f}/255 on average"
        other = direct_render(pipeline, cameras, len(cameras) - 1 - index)
        assert np.abs(frames[index] - other).mean() > 2 * error, "the frames don't tell their cameras apart"
    return frames


def test_eval_views_are_the_held_out_targets_at_the_scenes_poses(room, pipeline):
    """ns-render's "eval" poses (interpolate's default, spiral's start) are frames 3 and 9 where the dataset has them."""
    from ff3r_ns.data.readers import read_scene
    from ff3r_ns.network.cameras import opencv_to_opengl_c2w

    targets = pipeline.datamanager.eval_dataset.cameras
    truth = torch.as_tensor(read_scene(room).camera_to_worlds[[3, 9]], dtype=torch.float32)
    torch.testing.assert_close(targets.camera_to_worlds, opencv_to_opengl_c2w(truth)[:, :3, :4])
    assert targets.width.flatten().tolist() == [VIEW, VIEW] and targets.height.flatten().tolist() == [VIEW, VIEW]


def test_ns_render_interpolate_through_the_context_cameras(reconstruction, pipeline, tmp_path):
    run, _ = reconstruction
    video = tmp_path / "interpolate.mp4"
    run_command(
        "ns-render", "interpolate", "--load-config", str(run / "config.yml"), "--output-path", str(video),
        "--pose-source", "train", "--interpolation-steps", "2", "--frame-rate", "8",
    )  # fmt: skip
    cameras = pipeline.datamanager.train_dataset.cameras
    check_video(video, pipeline, get_interpolated_camera_path(cameras, steps=2, order_poses=False))


def test_ns_render_spiral_around_the_first_held_out_view(reconstruction, pipeline, tmp_path):
    run, _ = reconstruction
    video = tmp_path / "spiral.mp4"
    run_command(
        "ns-render", "spiral", "--load-config", str(run / "config.yml"), "--output-path", str(video),
        "--seconds", "0.5", "--frame-rate", "8", "--radius", "0.3",
    )  # fmt: skip
    start, _ = pipeline.datamanager.eval_dataloader.get_camera(image_idx=0)
    path = get_spiral_path(start, steps=4, radius=0.3)
    check_video(video, pipeline, path)


def test_ns_render_camera_path_through_context_cameras(reconstruction, pipeline, tmp_path):
    """A camera path as the viewer writes it (OpenGL camera-to-world, vertical fov in degrees), rendered
    without reading the scene (ns-render camera-path loads the run for inference)."""
    run, _ = reconstruction
    context = pipeline.datamanager.train_dataset.cameras
    frames = []
    for i in (0, 2, 4):
        c2w = torch.cat([context.camera_to_worlds[i], torch.tensor([[0.0, 0.0, 0.0, 1.0]])])
        fov = math.degrees(2 * math.atan(VIEW / 2 / float(context.fy[i])))
        frames.append({"camera_to_world": c2w.flatten().tolist(), "fov": fov, "aspect": 1.0})
    camera_path = {"render_height": VIEW, "render_width": VIEW, "seconds": 1.0, "camera_path": frames}
    (tmp_path / "path.json").write_text(json.dumps(camera_path))
    video = tmp_path / "path.mp4"
    run_command(
        "ns-render", "camera-path", "--load-config", str(run / "config.yml"), "--output-path", str(video),
        "--camera-path-filename", str(tmp_path / "path.json"),
    )  # fmt: skip
    check_video(video, pipeline, get_path_from_json(camera_path))
