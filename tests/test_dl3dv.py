"""DL3DV-10K layouts: images_4 + transforms.json (960P), and the sample's colmap/ folder beside video.mp4."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from ff3r_ns.data.readers import SceneWarning, detect_source, read_scene, read_scenes

FULL_HW, FACTOR = (36, 64), 4  # transforms.json describes the full resolution; images_4 is 9x16
CAMERA = {"w": 64, "h": 36, "fl_x": 50.0, "fl_y": 51.0, "cx": 32.5, "cy": 18.25, "k1": 0.01, "k2": 0.0,
          "p1": 0.0, "p2": 0.0, "camera_model": "OPENCV"}
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def c2w_opencv(i: int) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("yxz", [15 * i, -10, 4 * i], degrees=True).as_matrix()
    pose[:3, 3] = (0.2 * i, 0.1, 0.4 * i)
    return pose


def write_frames(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        size = (FULL_HW[0] // FACTOR, FULL_HW[1] // FACTOR, 3)
        Image.fromarray(np.full(size, 10 * i, np.uint8)).save(folder / f"frame_{i:05d}.png")


def write_transforms(folder: Path, n: int) -> None:
    frames = [{"file_path": f"images/frame_{i:05d}.png", "transform_matrix": (c2w_opencv(i) @ GL_TO_CV).tolist(),
               "colmap_im_id": i} for i in range(1, n + 1)]
    (folder / "transforms.json").write_text(json.dumps({**CAMERA, "frames": frames}))


def make_960p(root: Path, name: str, n: int = 4) -> Path:
    """``<hash>/images_4`` + ``<hash>/transforms.json`` listing ``images/frame_XXXXX.png``."""
    scene = root / name
    write_frames(scene / "images_4", n)
    write_transforms(scene, n)
    return scene


def make_sample(root: Path, name: str, n: int = 3) -> Path:
    """DL3DV-10K-Sample: ``<hash>/video.mp4`` and ``<hash>/colmap/{transforms.json, images_4, colmap/sparse/0}``."""
    scene = root / name
    write_frames(scene / "colmap" / "images_4", n)
    write_transforms(scene / "colmap", n)
    (scene / "video.mp4").write_bytes(b"not decodable: the reader must not open the 4K video")
    model = scene / "colmap" / "colmap" / "sparse" / "0"
    model.mkdir(parents=True)
    c = CAMERA
    (model / "cameras.txt").write_text(
        f"1 OPENCV {c['w']} {c['h']} {c['fl_x']} {c['fl_y']} {c['cx']} {c['cy']} 0.01 0 0 0\n")
    lines = []
    for i in range(1, n + 1):
        w2c = np.linalg.inv(c2w_opencv(i))
        x, y, z, w = Rotation.from_matrix(w2c[:3, :3]).as_quat()
        lines += [" ".join(map(str, [i, w, x, y, z, *w2c[:3, 3], 1, f"frame_{i:05d}.png"])), ""]
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    return scene


def scaled_k() -> np.ndarray:
    s = 1.0 / FACTOR
    return np.array([[CAMERA["fl_x"] * s, 0, CAMERA["cx"] * s], [0, CAMERA["fl_y"] * s, CAMERA["cy"] * s], [0, 0, 1]])


def test_images_4_with_full_resolution_transforms(tmp_path):
    scene = read_scene(make_960p(tmp_path, "a1b2"))
    assert [p.relative_to(tmp_path / "a1b2").as_posix() for p in scene.image_paths] == [
        f"images_4/frame_{i:05d}.png" for i in range(1, 5)]
    assert scene.image_sizes.tolist() == [[9, 16]] * 4
    np.testing.assert_allclose(scene.intrinsics, np.repeat(scaled_k()[None], 4, axis=0))
    np.testing.assert_allclose(scene.camera_to_worlds, np.stack([c2w_opencv(i) for i in range(1, 5)]), atol=1e-12)


def test_sample_layout_reads_colmap_transforms_not_the_video(tmp_path):
    scene_dir = make_sample(tmp_path, "c3d4")
    assert detect_source(scene_dir) == "nerfstudio"
    scene = read_scene(scene_dir)
    assert scene.name == "c3d4" and len(scene) == 3
    np.testing.assert_allclose(scene.intrinsics[0], scaled_k())


def test_colmap_variant_agrees_with_transforms(tmp_path):
    scene_dir = make_sample(tmp_path, "c3d4")
    scene = read_scene(scene_dir / "colmap", source="colmap")
    assert all(p.parent.name == "images_4" for p in scene.image_paths)
    np.testing.assert_allclose(scene.intrinsics[0], scaled_k())
    np.testing.assert_allclose(scene.camera_to_worlds, np.stack([c2w_opencv(i) for i in range(1, 4)]), atol=1e-9)


def test_a_root_of_both_layouts(tmp_path):
    make_960p(tmp_path / "1K", "a1b2")
    make_sample(tmp_path / "1K", "c3d4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scenes = read_scenes(tmp_path)
    assert [s.name for s in scenes] == ["a1b2", "c3d4"] and [len(s) for s in scenes] == [4, 3]
    assert not [w for w in caught if issubclass(w.category, SceneWarning)]


def test_multiscene_dataparser_serves_every_scene(tmp_path):
    from ff3r_ns.ns.dataparsers import FF3RMultiSceneDataParserConfig

    make_960p(tmp_path, "a1b2")
    make_sample(tmp_path, "c3d4")
    out = FF3RMultiSceneDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")
    assert [s.name for s in out.metadata["scenes"]] == ["a1b2", "c3d4"]
    assert out.cameras.fx[:, 0].tolist() == pytest.approx([CAMERA["fl_x"] / FACTOR] * 4)


def test_registered_dataparsers_in_pyproject():
    import importlib
    import tomllib

    from nerfstudio.plugins.registry_dataparser import DataParserSpecification

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    entries = pyproject["project"]["entry-points"]["nerfstudio.dataparser_configs"]
    assert {"ff3r-scannet", "ff3r-scannetpp", "ff3r-multiscene"} <= set(entries)
    for name, target in entries.items():
        module, attribute = target.split(":")
        spec = getattr(importlib.import_module(module), attribute)
        assert isinstance(spec, DataParserSpecification) and spec.description.startswith("FF3R"), name
