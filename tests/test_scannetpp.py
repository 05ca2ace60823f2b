"""ScanNet++ DSLR, undistorted form: poses checked against the scene's COLMAP model, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from ff3r_ns.data.readers import SceneWarning, detect_source, read_scannetpp, read_scene
from ff3r_ns.data.read_common import SceneError

HW = (24, 36)
CAMERA = {"fl_x": 30.0, "fl_y": 31.0, "cx": 18.0, "cy": 12.0, "w": 36, "h": 24}
NAMES = ["DSC00010.JPG", "DSC00002.JPG", "DSC00005.JPG", "DSC00007.JPG"]  # listed out of capture order
TEST_NAMES = ["DSC00009.JPG"]  # a held-out frame whose image is not shipped


def ground_truth_c2w(i: int) -> np.ndarray:
    """OpenCV camera-to-world in the COLMAP (laser-scan) world: a tilted camera walking along x."""
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("xyz", [20 + 3 * i, 35 * i, 5 - 2 * i], degrees=True).as_matrix()
    pose[:3, 3] = (0.5 * i, 1.2, -0.3 * i)
    return pose


def toolkit_transform(c2w_opencv: np.ndarray) -> list:
    """The transform_matrix the ScanNet++ toolkit writes for a COLMAP camera (its COLMAP -> nerfstudio step)."""
    c2w = c2w_opencv.copy()
    c2w[0:3, 1:3] *= -1  # OpenCV -> OpenGL camera axes
    c2w = c2w[[1, 0, 2, 3], :]  # world x <-> y
    c2w[2, :] *= -1  # world z -> -z
    return c2w.tolist()


def write_colmap_images(path: Path, poses: dict[str, np.ndarray]) -> None:
    lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for i, (name, c2w) in enumerate(poses.items(), start=1):
        w2c = np.linalg.inv(c2w)
        x, y, z, w = Rotation.from_matrix(w2c[:3, :3]).as_quat()
        lines += [" ".join(map(str, [i, w, x, y, z, *w2c[:3, 3], 1, name])), ""]
    path.write_text("\n".join(lines) + "\n")


def read_colmap_images(path: Path) -> dict[str, np.ndarray]:
    """World-to-camera 4x4 of each image of a COLMAP images.txt."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    out = {}
    for line in lines:
        tokens = line.split()
        w, x, y, z = map(float, tokens[1:5])
        w2c = np.eye(4)
        w2c[:3, :3] = Rotation.from_quat([x, y, z, w]).as_matrix()
        w2c[:3, 3] = [float(t) for t in tokens[5:8]]
        out[tokens[9]] = w2c
    return out


def make_scannetpp(root: Path, undistorted: bool = True) -> Path:
    """``root/<scene id>`` with dslr/ in the toolkit's layout, from one set of ground-truth poses."""
    dslr = root / "0a5c013435" / "dslr"
    poses = {name: ground_truth_c2w(i) for i, name in enumerate(NAMES + TEST_NAMES)}
    fisheye = {**CAMERA, "camera_model": "OPENCV_FISHEYE", "k1": 0.1, "k2": -0.02, "k3": 0.003, "k4": 0.0}
    frames = [{"file_path": n, "transform_matrix": toolkit_transform(poses[n]), "mask_path": n.replace(".JPG", ".png")}
              for n in NAMES]
    tests = [{"file_path": n, "transform_matrix": toolkit_transform(poses[n])} for n in TEST_NAMES]
    (dslr / "nerfstudio").mkdir(parents=True)
    (dslr / "nerfstudio" / "transforms.json").write_text(
        json.dumps({**fisheye, "frames": frames, "test_frames": tests, "has_mask": True}))
    for name in NAMES:
        (dslr / "resized_images").mkdir(exist_ok=True)
        Image.fromarray(np.full((*HW, 3), 50, np.uint8)).save(dslr / "resized_images" / name)
    (dslr / "colmap").mkdir()
    (dslr / "colmap" / "cameras.txt").write_text(
        "1 OPENCV_FISHEYE 36 24 30.0 31.0 18.0 12.0 0.1 -0.02 0.003 0.0\n")
    write_colmap_images(dslr / "colmap" / "images.txt", poses)
    (dslr / "colmap" / "points3D.txt").write_text("")
    if undistorted:
        pinhole = {**CAMERA, "fl_x": 26.0, "fl_y": 26.5, "camera_model": "PINHOLE",
                   "k1": 0.0, "k2": 0.0, "k3": 0.0, "k4": 0.0}
        (dslr / "nerfstudio" / "transforms_undistorted.json").write_text(
            json.dumps({**pinhole, "frames": frames, "test_frames": tests, "has_mask": True}))
        for name in NAMES:
            (dslr / "resized_undistorted_images").mkdir(exist_ok=True)
            Image.fromarray(np.full((*HW, 3), 60, np.uint8)).save(dslr / "resized_undistorted_images" / name)
    return dslr.parent


def read_quietly(path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = read_scannetpp(path)
    return scene, [str(w.message) for w in caught if issubclass(w.category, SceneWarning)]


def test_poses_agree_with_the_colmap_model(tmp_path):
    root = make_scannetpp(tmp_path)
    scene, messages = read_quietly(root)
    assert [p.name for p in scene.image_paths] == sorted(NAMES)
    assert all(p.parent.name == "resized_undistorted_images" for p in scene.image_paths)
    w2c = read_colmap_images(root / "dslr" / "colmap" / "images.txt")
    for name, c2w in zip([p.name for p in scene.image_paths], scene.camera_to_worlds):
        np.testing.assert_allclose(c2w, np.linalg.inv(w2c[name]), atol=1e-9)
    assert len(messages) == 1 and "DSC00009.JPG" in messages[0]  # the held-out frame without an image


def test_intrinsics_are_the_undistorted_pinhole(tmp_path):
    scene, _ = read_quietly(make_scannetpp(tmp_path))
    np.testing.assert_allclose(scene.intrinsics[0], [[26.0, 0, 18.0], [0, 26.5, 12.0], [0, 0, 1]])
    assert scene.name == "0a5c013435" and scene.image_sizes.tolist() == [list(HW)] * 4


def test_detected_from_the_scene_or_its_dslr_folder(tmp_path):
    root = make_scannetpp(tmp_path)
    assert detect_source(root) == detect_source(root / "dslr") == "scannetpp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        assert len(read_scene(root / "dslr")) == len(read_scene(root)) == 4


def test_toolkit_output_folder_name_is_accepted(tmp_path):
    root = make_scannetpp(tmp_path)
    (root / "dslr" / "resized_undistorted_images").rename(root / "dslr" / "undistorted_images")
    scene, _ = read_quietly(root)
    assert len(scene) == 4 and scene.image_paths[0].parent.name == "undistorted_images"


def test_fisheye_only_says_what_to_run(tmp_path):
    root = make_scannetpp(tmp_path, undistorted=False)
    with pytest.raises(SceneError, match=r"fisheye.*python -m dslr\.undistort dslr/configs/undistort\.yml"):
        read_scannetpp(root)


def test_scannetpp_dataparser_outputs(tmp_path):
    from ff3r_ns.ns.dataparsers import FF3RScanNetppDataParserConfig

    root = make_scannetpp(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        out = FF3RScanNetppDataParserConfig(data=root).setup().get_dataparser_outputs("train")
    assert len(out.image_filenames) == 4
    # back to nerfstudio's OpenGL camera axes, in the COLMAP world (not the toolkit's permuted one)
    first = sorted(NAMES)[0]
    want = ground_truth_c2w((NAMES + TEST_NAMES).index(first)) @ np.diag([1.0, -1.0, -1.0, 1.0])
    np.testing.assert_allclose(out.cameras.camera_to_worlds[0].numpy(), want[:3], atol=1e-6)
