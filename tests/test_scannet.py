"""ScanNet (SensReader export + label-filt): layout, label mapping, resampling into colour, bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ff3r_ns.data.classes import BED, CEILING, CHAIR, FLOOR, IGNORE, NYU40_TO_CLASS, OTHER, SOFA, TABLE, WALL
from ff3r_ns.data.classes import nyu40_to_class
from ff3r_ns.data.readers import SceneWarning, detect_source, read_scannet, read_scene, read_scenes
from ff3r_ns.data.read_common import SceneError
from ff3r_ns.data.sensor_maps import resample_to_image
from ff3r_ns.data.views import load_views

COLOR_HW, DEPTH_HW = (30, 40), (15, 20)  # depth at half the colour resolution
K_COLOR = np.array([[36.0, 0.0, 20.0], [0.0, 34.0, 15.0], [0.0, 0.0, 1.0]])
# Not K_COLOR / 2: the depth camera sees a narrower, shifted field, so a plain resize would be wrong.
K_DEPTH = np.array([[24.0, 0.0, 9.0], [0.0, 22.0, 8.0], [0.0, 0.0, 1.0]])
# raw ScanNet id -> nyu40 id; the raw ids are chosen to differ from their nyu40 ids (raw 5 is a sofa, nyu40 5 a chair)
TSV_ROWS = {3: 1, 11: 2, 9: 22, 2: 5, 40: 7, 5: 6, 22: 4, 13: 39}
RAW_TO_CLASS = {0: IGNORE, 3: WALL, 11: FLOOR, 9: CEILING, 2: CHAIR, 40: TABLE, 5: SOFA, 22: BED, 13: OTHER, 77: OTHER}
BAD_POSE_FRAME = "2"


def c2w(i: int) -> np.ndarray:
    a = np.radians(12 * i)
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    pose[:3, 3] = (0.3 * i, -0.1 * i, 1.5)
    return pose


def depth_mm(i: int) -> np.ndarray:
    """Depth that names its own pixel: 1000 + 100 * row + col (+ 3000 * frame) millimetres."""
    rows, cols = np.mgrid[: DEPTH_HW[0], : DEPTH_HW[1]]
    return (1000 + 100 * rows + cols + 3000 * i).astype(np.uint16)


def raw_labels() -> np.ndarray:
    """Raw ids in vertical bands at the depth resolution, 77 (absent from the tsv) in the last band."""
    ids = np.array(list(RAW_TO_CLASS))
    band = np.arange(DEPTH_HW[1]) * len(ids) // DEPTH_HW[1]
    return np.repeat(ids[band][None], DEPTH_HW[0], axis=0).astype(np.uint16)


def write_matrix(path: Path, matrix: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, matrix)


def write_tsv(path: Path) -> Path:
    lines = ["id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class"]
    lines += [f"{raw}\tthing{raw}\tthing{raw}\t1\t{nyu}\t1\tx\tx" for raw, nyu in TSV_ROWS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_scannet(root: Path, n: int = 6, tsv: bool = True) -> Path:
    """``root/scans/scene0000_00``: n frames, frame 2 with a -inf pose, frame n (colour only) and
    frame n + 1 (no label) that are not in every folder; the tsv in ``root``."""
    scene = root / "scans" / "scene0000_00"
    for i in range(n + 2):
        image = np.zeros((*COLOR_HW, 3), np.uint8)
        image[..., 0] = 20 * i
        (scene / "color").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(scene / "color" / f"{i}.jpg")
        if i == n:
            continue
        pose = np.full((4, 4), -np.inf) if str(i) == BAD_POSE_FRAME else c2w(i)
        write_matrix(scene / "pose" / f"{i}.txt", pose)
        (scene / "depth").mkdir(exist_ok=True)
        Image.fromarray(depth_mm(i)).save(scene / "depth" / f"{i}.png")
        if i == n + 1:
            continue
        (scene / "label-filt").mkdir(exist_ok=True)
        Image.fromarray(raw_labels()).save(scene / "label-filt" / f"{i}.png")
    k_color, k_depth = np.eye(4), np.eye(4)
    k_color[:3, :3], k_depth[:3, :3] = K_COLOR, K_DEPTH
    write_matrix(scene / "intrinsic" / "intrinsic_color.txt", k_color)
    write_matrix(scene / "intrinsic" / "intrinsic_depth.txt", k_depth)
    if tsv:
        write_tsv(root / "scannetv2-labels.combined.tsv")
    return scene


def read_quietly(scene: Path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_scannet(scene, **kwargs)
    return data, [str(w.message) for w in caught if issubclass(w.category, SceneWarning)]


def test_nyu40_mapping_is_the_papers_table():
    assert NYU40_TO_CLASS == {1: WALL, 2: FLOOR, 22: CEILING, 5: CHAIR, 7: TABLE, 6: SOFA, 4: BED}
    ids = np.arange(41)
    expected = np.array([IGNORE] + [OTHER] * 40)
    expected[[1, 2, 22, 5, 7, 6, 4]] = [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(nyu40_to_class(ids), expected)


def test_resample_matches_a_hand_computed_projection():
    # image 4x6, K_i = [[6, 0, 3], [0, 6, 2]]; map 3x4, K_m = [[3, 0, 0.5], [0, 3, 1.5]]
    # x_m = 3/6 (u + 0.5 - 3) + 0.5 = 0.5 u - 0.75  -> u = 0..5: -0.75 -0.25 0.25 0.75 1.25 1.75
    # y_m = 3/6 (v + 0.5 - 2) + 1.5 = 0.5 v + 0.75  -> v = 0..3: 0.75 1.25 1.75 2.25
    values = np.arange(1, 13).reshape(3, 4)
    k_image = np.array([[6.0, 0, 3], [0, 6, 2], [0, 0, 1]])
    k_map = np.array([[3.0, 0, 0.5], [0, 3, 1.5], [0, 0, 1]])
    cols, rows = [None, None, 0, 0, 1, 1], [0, 1, 1, 2]
    expected = np.array([[0 if c is None else values[r, c] for c in cols] for r in rows])
    np.testing.assert_array_equal(resample_to_image(values, k_map, k_image, (4, 6)), expected)


def test_reads_the_layout_and_reports_bad_frames_once(tmp_path):
    scene = make_scannet(tmp_path)
    assert detect_source(scene) == "scannet"
    data, messages = read_quietly(scene)
    assert data.frame_ids == ["0", "1", "3", "4", "5"]
    np.testing.assert_allclose(data.camera_to_worlds, np.stack([c2w(int(i)) for i in data.frame_ids]))
    np.testing.assert_allclose(data.intrinsics[0], K_COLOR)
    np.testing.assert_allclose(data.map_intrinsics[0], K_DEPTH)
    assert data.depth_scale == 0.001 and data.image_sizes.tolist() == [list(COLOR_HW)] * 5
    pose_warnings = [m for m in messages if "finite" in m]
    assert len(pose_warnings) == 1 and f": {BAD_POSE_FRAME}" in pose_warnings[0]
    folder_warnings = [m for m in messages if "not present in all" in m]
    assert len(folder_warnings) == 1
    assert "6 (no depth/pose/label-filt)" in folder_warnings[0] and "7 (no label-filt)" in folder_warnings[0]
    assert len(messages) == 2


def test_depth_and_labels_arrive_in_the_colour_frame(tmp_path):
    data, _ = read_quietly(make_scannet(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        views = load_views(data, [0, 2], COLOR_HW, depth=True, labels=True)  # frames "0" and "3"
        load_views(data, [1], COLOR_HW, labels=True)
    unlisted = [str(w.message) for w in caught if "not in this table" in str(w.message)]
    assert len(unlisted) == 1 and "77" in unlisted[0]
    labels = raw_labels()
    for view, frame in enumerate((0, 3)):
        for v, u in [(0, 0), (14, 20), (29, 39), (7, 3), (22, 31)]:
            x = K_DEPTH[0, 0] / K_COLOR[0, 0] * (u + 0.5 - K_COLOR[0, 2]) + K_DEPTH[0, 2]
            y = K_DEPTH[1, 1] / K_COLOR[1, 1] * (v + 0.5 - K_COLOR[1, 2]) + K_DEPTH[1, 2]
            col, row = int(np.floor(x)), int(np.floor(y))
            inside = 0 <= row < DEPTH_HW[0] and 0 <= col < DEPTH_HW[1]
            want_depth = (1000 + 100 * row + col + 3000 * frame) / 1000 if inside else 0.0
            want_label = RAW_TO_CLASS[int(labels[row, col])] if inside else IGNORE
            assert float(views.depth[view, v, u]) == pytest.approx(want_depth, rel=1e-6), (v, u)
            assert int(views.labels[view, v, u]) == want_label, (v, u)
    assert (views.depth[0] == 0).any()  # the colour camera sees beyond the depth camera's field
    assert set(views.labels.unique().tolist()) <= set(range(9))


def test_missing_tsv_names_where_it_looked_and_the_flag(tmp_path):
    scene = make_scannet(tmp_path, tsv=False)
    with pytest.raises(SceneError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        read_scannet(scene)
    message = str(err.value)
    assert "scannetv2-labels.combined.tsv" in message and "--labels-tsv" in message and "labels_tsv" in message
    assert str(scene) in message and str(tmp_path) in message
    given = write_tsv(tmp_path / "elsewhere.tsv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        data = read_scene(scene, labels_tsv=given)
    assert data.label_table.source == given


def test_a_scene_without_labels_needs_no_tsv(tmp_path):
    scene = make_scannet(tmp_path, tsv=False)
    for file in (scene / "label-filt").iterdir():
        file.unlink()
    (scene / "label-filt").rmdir()
    data, messages = read_quietly(scene)
    assert data.label_paths is None and data.label_table is None and len(data) == 6  # 0, 1, 3, 4, 5, 7


def test_read_scenes_finds_scannet_scenes_under_scans(tmp_path):
    make_scannet(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        scenes = read_scenes(tmp_path)
    assert [s.name for s in scenes] == ["scene0000_00"] and scenes[0].label_table is not None


def test_scannet_dataparser_outputs(tmp_path):
    from ff3r_ns.ns.dataparsers import FF3RScanNetDataParserConfig

    scene = make_scannet(tmp_path, tsv=False)
    tsv = write_tsv(tmp_path / "labels.tsv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        out = FF3RScanNetDataParserConfig(data=scene, labels_tsv=tsv).setup().get_dataparser_outputs("train")
    assert len(out.image_filenames) == 5 and out.metadata["has_poses"]
    assert out.cameras.fx[:, 0].tolist() == pytest.approx([K_COLOR[0, 0]] * 5)
    gl = out.cameras.camera_to_worlds[1].numpy()
    np.testing.assert_allclose(gl, (c2w(1) @ np.diag([1.0, -1.0, -1.0, 1.0]))[:3], atol=1e-6)
    assert out.metadata["scene"].label_table.source == tsv
