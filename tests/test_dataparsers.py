"""The nerfstudio dataparsers: registration, cameras, splits and metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ff3r_ns.data.readers import SceneWarning
from ff3r_ns.data.scene import SceneData
from ff3r_ns.ns import dataparsers as dp

NAMES = {
    "ff3r-images": dp.FF3RImagesDataParserConfig,
    "ff3r-video": dp.FF3RVideoDataParserConfig,
    "ff3r-nerfstudio": dp.FF3RNerfstudioDataParserConfig,
    "ff3r-colmap": dp.FF3RColmapDataParserConfig,
    "ff3r-7scenes": dp.FF3RSevenScenesDataParserConfig,
    "ff3r-multiscene": dp.FF3RMultiSceneDataParserConfig,
}


def write_image(path: Path, height: int, width: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path)
    return path


def gl_pose(i: int) -> np.ndarray:
    a = np.radians(7 * i)
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    pose[:3, 3] = (i, -i, 1)
    return pose


def make_nerfstudio(root: Path, n: int) -> None:
    frames = []
    for i in range(n):
        write_image(root / f"images/{i}.png", 12, 16)
        Image.fromarray(np.full((12, 16), 700, np.uint16)).save(root / f"images/{i}.depth.png")
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": gl_pose(i).tolist(),
                       "depth_file_path": f"images/{i}.depth.png"})
    meta = {"fl_x": 20, "fl_y": 22, "cx": 8, "cy": 6, "w": 16, "h": 12, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))


def test_entry_points_register_all_six():
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    configs, descriptions = discover_dataparsers()
    for name, cls in NAMES.items():
        assert type(configs[name]) is cls and descriptions[name].startswith("FF3R")


def test_configs_parse_from_the_command_line():
    import tyro
    from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion

    config = tyro.cli(AnnotatedDataParserUnion, args=["ff3r-7scenes", "--data", "/x", "--sequences", "1", "3"])
    assert isinstance(config, dp.FF3RSevenScenesDataParserConfig) and config.sequences == ("1", "3")
    config = tyro.cli(AnnotatedDataParserUnion, args=["ff3r-video", "--data", "v.mp4", "--stride", "4"])
    assert config.stride == 4 and config.num_frames is None


def test_unposed_image_folder_gets_placeholders(tmp_path):
    write_image(tmp_path / "img2.png", 30, 40)
    write_image(tmp_path / "img10.png", 50, 20)
    parser = dp.FF3RImagesDataParserConfig(data=tmp_path).setup()
    out = parser.get_dataparser_outputs("train")
    assert [p.name for p in out.image_filenames] == ["img2.png", "img10.png"]
    cams = out.cameras
    assert torch.equal(cams.camera_to_worlds, torch.eye(4)[:3].expand(2, 3, 4))
    assert cams.fx[:, 0].tolist() == pytest.approx([48.0, 60.0])  # 1.2 * max(h, w)
    assert cams.cx[:, 0].tolist() == [20.0, 10.0] and cams.cy[:, 0].tolist() == [15.0, 25.0]
    assert cams.width[:, 0].tolist() == [40, 20] and cams.height[:, 0].tolist() == [30, 50]
    assert out.metadata["has_poses"] is False and out.metadata["has_intrinsics"] is False
    assert isinstance(out.metadata["scene"], SceneData) and out.metadata["depth_filenames"] is None
    assert len(parser.get_dataparser_outputs("val").image_filenames) == 2  # unposed: every frame


def test_nerfstudio_parser_poses_splits_and_depth(tmp_path):
    make_nerfstudio(tmp_path, 10)
    parser = dp.FF3RNerfstudioDataParserConfig(data=tmp_path).setup()
    train, val = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")
    assert len(train.image_filenames) == 10 and [p.name for p in val.image_filenames] == ["0.png", "8.png"]
    expected = torch.from_numpy(np.stack([gl_pose(i)[:3] for i in range(10)])).float()
    torch.testing.assert_close(train.cameras.camera_to_worlds, expected)  # back to the file's OpenGL poses
    assert train.cameras.fy[0, 0].item() == 22 and train.metadata["has_poses"] is True
    assert [p.name for p in val.metadata["depth_filenames"]] == ["0.depth.png", "8.depth.png"]
    assert val.metadata["depth_unit_scale_factor"] == 0.001 and len(val.metadata["scene"]) == 2
    held = dp.FF3RNerfstudioDataParserConfig(data=tmp_path, holdout_eval=True).setup()
    assert len(held.get_dataparser_outputs("train").image_filenames) == 8
    assert len(held.get_dataparser_outputs("test").image_filenames) == 2
    every = dp.FF3RNerfstudioDataParserConfig(data=tmp_path, eval_interval=0).setup()
    assert len(every.get_dataparser_outputs("val").image_filenames) == 10


def test_colmap_7scenes_video_and_multiscene_parsers(tmp_path):
    root = tmp_path / "scenes"
    colmap = root / "sfm"
    (colmap / "sparse" / "0").mkdir(parents=True)
    (colmap / "sparse" / "0" / "cameras.txt").write_text("1 PINHOLE 16 12 20 21 8 6\n")
    (colmap / "sparse" / "0" / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 0 1 0 0 1 b.png\n\n")
    for name in ("a", "b"):
        write_image(colmap / "photos" / f"{name}.png", 12, 16)
    out = dp.FF3RColmapDataParserConfig(data=colmap, images_path=Path("photos")).setup().get_dataparser_outputs()
    assert out.cameras.camera_to_worlds[1, :, 3].tolist() == [-1.0, 0.0, 0.0]
    assert out.cameras.camera_to_worlds[0, :, :3].diag().tolist() == [1.0, -1.0, -1.0]  # OpenCV -> OpenGL

    stairs = root / "stairs"
    for s in (1, 2):
        for f in range(2):
            write_image(stairs / f"seq-0{s}" / f"frame-00000{f}.color.png", 48, 64)
            write_image(stairs / f"seq-0{s}" / f"frame-00000{f}.depth.png", 48, 64)
            np.savetxt(stairs / f"seq-0{s}" / f"frame-00000{f}.pose.txt", np.eye(4))
    out = dp.FF3RSevenScenesDataParserConfig(data=stairs, sequences=("2",)).setup().get_dataparser_outputs()
    assert [p.parent.name for p in out.image_filenames] == ["seq-02", "seq-02"]
    assert out.cameras.fx[0, 0].item() == pytest.approx(58.5) and out.metadata["depth_unit_scale_factor"] == 0.001

    av = pytest.importorskip("av")
    video = root / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 20 * i, np.uint8), format="rgb24")
            for packet in [*stream.encode(frame)]:
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    config = dp.FF3RVideoDataParserConfig(data=video, num_frames=3, frames_dir=tmp_path / "frames")
    out = config.setup().get_dataparser_outputs()
    assert [p.name for p in out.image_filenames] == ["frame_000000.jpg", "frame_000002.jpg", "frame_000005.jpg"]

    with pytest.warns(SceneWarning) as record:  # not clip_frames/: it is the video's frame cache
        out = dp.FF3RMultiSceneDataParserConfig(data=root).setup().get_dataparser_outputs("train")
    assert len(record) == 1
    assert "1 folder(s) are not scenes and were skipped: sfm (no image folder" in str(record[0].message)
    scenes = out.metadata["scenes"]
    assert [s.name for s in scenes] == ["clip", "stairs"] and len(scenes[0]) == 6
    assert out.image_filenames == scenes[0].image_paths and len(out.cameras) == len(scenes[0])


@pytest.mark.realdata
def test_real_fox_through_the_nerfstudio_parser(shared_data):
    with pytest.warns(SceneWarning, match="17 of 67"):
        parser = dp.FF3RNerfstudioDataParserConfig(data=shared_data / "fox").setup()
        out = parser.get_dataparser_outputs("train")
    assert len(out.image_filenames) == 50 and out.cameras.width[0, 0].item() == 1080
    meta = json.loads((shared_data / "fox" / "transforms.json").read_text())
    first = torch.tensor(meta["frames"][0]["transform_matrix"], dtype=torch.float32)[:3]
    torch.testing.assert_close(out.cameras.camera_to_worlds[0], first)
    assert len(parser.get_dataparser_outputs("val").image_filenames) == 7  # frames 0, 8, ..., 48
