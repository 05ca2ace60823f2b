"""Bad input gives a SceneError that names the path and says what to do, or one SceneWarning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ff3r_ns.data.readers import (
    SceneError,
    SceneWarning,
    extract_video_frames,
    read_7scenes,
    read_colmap,
    read_image_folder,
    read_nerfstudio,
    read_scene,
    read_scenes,
)

POSE = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def write_image(path: Path, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)).save(path)
    return path


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


def write_transforms(root: Path, frames: list, **top) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta = {"fl_x": 10, "fl_y": 10, "cx": 8, "cy": 8, "w": 16, "h": 16, **top, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_scene_error_is_a_value_error():
    assert issubclass(SceneError, ValueError) and issubclass(SceneWarning, UserWarning)


def test_missing_path(tmp_path):
    with pytest.raises(SceneError, match=r"nowhere does not exist"):
        read_scene(tmp_path / "nowhere")


def test_folder_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SceneError, match=r"no scene in .*: no images .*Pass the folder that holds the views"):
        read_scene(tmp_path)
    with pytest.raises(SceneError, match=r"no images .* in .*or .*images"):
        read_image_folder(tmp_path)


def test_single_image_folder_and_single_image_file(tmp_path):
    image = write_image(tmp_path / "one" / "only.png")
    with pytest.raises(SceneError, match=r"only 1 usable image .*only\.png.*at least 2 views"):
        read_scene(tmp_path / "one")
    with pytest.raises(SceneError, match=r"only\.png is a single image.*at least 2 views"):
        read_scene(image)


def test_unsupported_file(tmp_path):
    (tmp_path / "scene.obj").write_text("v 0 0 0")
    with pytest.raises(SceneError, match=r"scene\.obj is not a scene"):
        read_scene(tmp_path / "scene.obj")


def test_truncated_images_are_skipped_with_one_warning(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.jpg", 64)
    truncate(write_image(tmp_path / "3.jpg", 64))
    (tmp_path / "4.png").write_text("not a png")
    with pytest.warns(SceneWarning) as record:
        scene = read_scene(tmp_path)
    assert len(record) == 1
    assert "3.jpg (corrupt or truncated" in str(record[0].message) and "4.png" in str(record[0].message)
    assert len(scene) == 3 and sorted(p.name for p, _ in scene.skipped) == ["3.jpg", "4.png"]


def test_too_few_readable_images(tmp_path):
    write_image(tmp_path / "0.jpg", 64)
    truncate(write_image(tmp_path / "1.jpg", 64))
    with pytest.warns(SceneWarning, match="1.jpg"), pytest.raises(SceneError, match=r"only 1 usable image"):
        read_scene(tmp_path)


def test_unreadable_video(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(SceneError, match=r"cannot decode video .*broken\.mp4.*re-encode it"):
        read_scene(tmp_path / "broken.mp4")


def test_video_with_one_frame_and_bad_options(tmp_path):
    av = pytest.importorskip("av")
    video = tmp_path / "still.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(SceneError, match=r"only 1 usable image.*longer video"):
        read_scene(video)
    with pytest.raises(SceneError, match=r"stride or a frame count, not both"):
        extract_video_frames(video, stride=2, num_frames=3)
    with pytest.raises(SceneError, match=r"at least 1"):
        extract_video_frames(video, stride=0)


def test_transforms_pointing_at_missing_files(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.png")
    frames = [{"file_path": f"images/{n}.png", "transform_matrix": POSE} for n in ("a", "b", "c")]
    frames[1]["depth_file_path"] = "depth/b.png"  # missing depth: that frame goes too
    write_transforms(tmp_path, frames)
    with pytest.warns(SceneWarning, match=r"skipped 2 of 3 frames .*depth/b\.png, images/c\.png"):
        with pytest.raises(SceneError, match=r"only 1 usable image .*a\.png.*'file_path'"):
            read_nerfstudio(tmp_path)


@pytest.mark.parametrize(
    "frames, top, message",
    [
        ("{not json", None, r"transforms\.json is not valid JSON"),
        ([], {}, r"key 'frames' must be a non-empty list"),
        ([{"transform_matrix": POSE}], {}, r"frames\[0\]: key 'file_path'"),
        ([{"file_path": "images/a.png"}], {}, r"frames\[0\]: key 'transform_matrix' .* is missing"),
        ([{"file_path": "images/a.png", "transform_matrix": [[1, 0], [0, 1]]}], {}, r"'transform_matrix' must be 4x4"),
        ([{"file_path": "images/a.png", "transform_matrix": POSE, "fl_x": "big"}], {}, r"key 'fl_x' must be a number"),
        ([{"file_path": "images/a.png", "transform_matrix": POSE}], {"fl_x": None, "fl_y": None},
         r"no focal length: give key 'fl_x'"),
    ],
)
def test_malformed_transforms_name_the_key(tmp_path, frames, top, message):
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.png")
    if top is None:
        (tmp_path / "transforms.json").write_text(frames)
    else:
        if frames:
            frames = frames + [{"file_path": "images/b.png", "transform_matrix": POSE}]
        write_transforms(tmp_path, frames, **top)
    with pytest.raises(SceneError, match=message):
        read_nerfstudio(tmp_path)


def test_nerfstudio_folder_without_transforms(tmp_path):
    with pytest.raises(SceneError, match=r"no transforms\.json in"):
        read_nerfstudio(tmp_path)


def test_colmap_problems(tmp_path):
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    with pytest.raises(SceneError, match=r"no COLMAP model in .*sparse/0"):
        read_colmap(tmp_path)
    (model / "cameras.txt").write_text("1 WEIRD_MODEL 16 16 10 8 8\n")
    (model / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 0 0 0 0 1 b.png\n\n")
    with pytest.raises(SceneError, match=r"no image folder for the COLMAP model"):
        read_colmap(tmp_path)
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.png")
    with pytest.raises(SceneError, match=r"cameras\.txt: camera line 1: unknown COLMAP camera model 'WEIRD_MODEL'"):
        read_colmap(tmp_path)
    (model / "cameras.txt").write_text("1 PINHOLE 16 16 10 8 8\n")
    with pytest.raises(SceneError, match=r"PINHOLE needs 4 parameters, got 3"):
        read_colmap(tmp_path)
    (model / "cameras.txt").write_text("2 PINHOLE 16 16 10 10 8 8\n")
    with pytest.raises(SceneError, match=r"image a\.png refers to camera 1, which is not defined"):
        read_colmap(tmp_path)


def test_7scenes_unknown_sequence(tmp_path):
    for f in range(2):
        write_image(tmp_path / "seq-01" / f"frame-{f:06d}.color.png")
    with pytest.raises(SceneError, match=r"seq-05 not found in .*available: seq-01"):
        read_7scenes(tmp_path, sequences=[5])
    with pytest.raises(SceneError, match=r"TestSplit\.txt not found"):
        read_7scenes(tmp_path, sequences="test")
    with pytest.warns(SceneWarning, match=r"no readable pose"), pytest.raises(SceneError, match="no usable images"):
        read_7scenes(tmp_path)


def test_multiscene_root_without_scenes(tmp_path):
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "lonely" / "one.png")
    with pytest.raises(SceneError, match=r"no scenes found under .*empty \(no images.*lonely \(.*only 1 usable image"):
        read_scenes(tmp_path)
