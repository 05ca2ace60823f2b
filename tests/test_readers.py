"""Image decoding and every scene reader, on small scenes written by the tests and on ../shared/data."""

from __future__ import annotations

import json
import math
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from ff3r_ns.data.images import check_images, image_size, load_image, natural_sort_key
from ff3r_ns.data.readers import (
    SceneWarning,
    detect_source,
    extract_video_frames,
    read_7scenes,
    read_colmap,
    read_colmap_model,
    read_image_folder,
    read_nerfstudio,
    read_scene,
    read_scenes,
    read_video,
)

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def write_image(path: Path, height: int = 12, width: int = 16, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)
    return path


def write_video(path: Path, num_frames: int, height: int = 48, width: int = 64) -> Path:
    """An mpeg4 video whose frame i is uniformly grey at level 10 * i."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 10 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def gl_pose(i: int) -> list:
    """A valid OpenGL camera-to-world: rotation about y by 10*i degrees, centre (i, 0.5 i, 2)."""
    a = math.radians(10 * i)
    return [[math.cos(a), 0, math.sin(a), i], [0, 1, 0, 0.5 * i], [-math.sin(a), 0, math.cos(a), 2], [0, 0, 0, 1]]


# ----------------------------------------------------------------------------------------------- images


def test_natural_sort_key_orders_numbers_by_value():
    names = ["img10.png", "img2.png", "IMG3.jpg", "img1.png", "a.png"]
    assert sorted(names, key=natural_sort_key) == ["a.png", "img1.png", "img2.png", "IMG3.jpg", "img10.png"]


def test_load_image_rgba_grayscale_16bit_webp(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[0, :, 3] = 0  # transparent row -> white
    rgba[1, :, 3] = 255  # opaque row -> red
    rgba[2, :, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    assert out.dtype == np.float32 and out.shape == (4, 6, 3)
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], [[1.0, 0.0, 0.0]] * 6)
    np.testing.assert_allclose(out[2, 0], [1.0, 127 / 255, 127 / 255], atol=1e-6)

    Image.fromarray(np.full((5, 7), 51, np.uint8), "L").save(tmp_path / "gray.png")
    np.testing.assert_allclose(load_image(tmp_path / "gray.png"), 0.2, atol=1e-6)

    sixteen = np.array([[0, 32768, 65535]], np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    out = load_image(tmp_path / "sixteen.png")
    assert out.shape == (1, 3, 3)
    np.testing.assert_allclose(out[0, :, 1], [0.0, 32768 / 65535, 1.0], atol=1e-6)

    colors = (np.arange(5 * 7 * 3).reshape(5, 7, 3) * 3 % 256).astype(np.uint8)
    Image.fromarray(colors).save(tmp_path / "lossless.webp", lossless=True)
    np.testing.assert_allclose(load_image(tmp_path / "lossless.webp"), colors / 255.0, atol=1e-6)


def test_exif_orientation_is_applied_to_pixels_and_size(tmp_path):
    stored = np.zeros((40, 80, 3), np.uint8)  # stored 80 wide, 40 high
    stored[:20, :20] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    assert image_size(tmp_path / "rotated.jpg") == (80, 40)
    out = load_image(tmp_path / "rotated.jpg")
    assert out.shape == (80, 40, 3)
    assert out[5, 35, 0] > 0.9 and out[5, 35, 1] < 0.1  # clockwise: top-left goes to top-right
    assert out[5, 5, 0] < 0.1


def test_check_images_decodes_and_reports_broken_files(tmp_path):
    good = write_image(tmp_path / "good.jpg", 64, 64)
    data = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(data).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:-300])
    Image.fromarray(data).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:-500])
    (tmp_path / "text.jpg").write_text("not an image")
    names = ["cut.png", "cut.jpg", "text.jpg", "no.png"]
    ok, bad = check_images([good, *(tmp_path / name for name in names)])
    assert ok == [good]
    reasons = {p.name: r for p, r in bad}
    assert set(reasons) == {"cut.png", "cut.jpg", "text.jpg", "no.png"}
    assert "truncated" in reasons["cut.png"] and "truncated" in reasons["cut.jpg"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ------------------------------------------------------------------------------------- image folder


def test_image_folder_natural_order_mixed_sizes_and_formats(tmp_path):
    scene = tmp_path / "room"
    write_image(scene / "images" / "img10.png", 10, 20)
    write_image(scene / "images" / "img2.jpg", 30, 15)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(scene / "images" / "img1.webp")
    (scene / "images" / "notes.txt").write_text("ignored")
    data = read_image_folder(scene)
    assert [p.name for p in data.image_paths] == ["img1.webp", "img2.jpg", "img10.png"]
    assert data.image_sizes.tolist() == [[8, 8], [30, 15], [10, 20]]
    assert data.name == "room" and not data.has_poses and data.intrinsics is None
    assert read_image_folder(scene / "images").image_paths == data.image_paths


# -------------------------------------------------------------------------------------------- video


def test_video_frames_at_a_stride_and_to_a_count(tmp_path):
    video = write_video(tmp_path / "walk.mp4", 23)
    frames = extract_video_frames(video, stride=5)
    assert [p.name for p in frames] == [f"frame_{i:06d}.jpg" for i in (0, 5, 10, 15, 20)]
    assert frames[0].parent == tmp_path / "walk_frames" / "stride-5"
    levels = [load_image(p).mean() * 255 for p in frames]
    np.testing.assert_allclose(levels, [0, 50, 100, 150, 200], atol=4)

    stamp = frames[1].stat().st_mtime_ns
    assert extract_video_frames(video, stride=5) == frames  # cached, not written again
    assert frames[1].stat().st_mtime_ns == stamp

    scene = read_video(video, output_dir=tmp_path / "out", num_frames=4)
    assert [p.name for p in scene.image_paths] == [f"frame_{i:06d}.jpg" for i in (0, 7, 15, 22)]
    assert scene.image_paths[0].parent == tmp_path / "out" and scene.name == "walk"
    assert scene.image_sizes.tolist() == [[48, 64]] * 4
    again = read_video(video, output_dir=tmp_path / "out", stride=11)  # other setting: folder refilled
    assert [p.name for p in again.image_paths] == ["frame_000000.jpg", "frame_000011.jpg", "frame_000022.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [p.name for p in again.image_paths]
    assert len(read_scene(video, num_frames=50)) == 23  # a count above the length takes every frame


# --------------------------------------------------------------------------------------- nerfstudio


def make_nerfstudio_scene(root: Path, num_frames: int = 4, missing: tuple[int, ...] = (), extras: bool = True) -> dict:
    """A transforms.json scene with depth/label/feature files; frames in ``missing`` have no image."""
    frames = []
    for i in range(num_frames):
        name = f"images/frame_{i:05d}.png"
        if i not in missing:
            write_image(root / name, 12, 16)
        frame = {"file_path": name, "transform_matrix": gl_pose(i)}
        if extras:
            (root / "depth").mkdir(parents=True, exist_ok=True)
            (root / "labels").mkdir(exist_ok=True)
            (root / "features").mkdir(exist_ok=True)
            Image.fromarray(np.full((12, 16), 1500, np.uint16)).save(root / f"depth/{i}.png")
            Image.fromarray(np.full((12, 16), 3, np.uint8)).save(root / f"labels/{i}.png")
            np.save(root / f"features/{i}.npy", np.zeros((6, 8, 4), np.float16))
            frame.update(depth_file_path=f"depth/{i}.png", semantic_file_path=f"labels/{i}.png",
                         feature_file_path=f"features/{i}.npy")
        frames.append(frame)
    meta = {"fl_x": 20.0, "fl_y": 21.0, "cx": 8.0, "cy": 6.0, "w": 16, "h": 12, "frames": frames}
    root.mkdir(parents=True, exist_ok=True)
    (root / "transforms.json").write_text(json.dumps(meta))
    return meta


def test_nerfstudio_scene_with_a_missing_frame(tmp_path):
    meta = make_nerfstudio_scene(tmp_path / "synth", 4, missing=(2,))
    meta["frames"][1].update(fl_x=40.0, cx=7.0)  # per-frame intrinsics win over the shared ones
    (tmp_path / "synth" / "transforms.json").write_text(json.dumps(meta))
    with pytest.warns(SceneWarning, match=r"skipped 1 of 4 frames .*images/frame_00002\.png"):
        scene = read_scene(tmp_path / "synth")
    assert [p.name for p in scene.image_paths] == ["frame_00000.png", "frame_00001.png", "frame_00003.png"]
    expected = np.stack([np.array(gl_pose(i)) @ GL_TO_CV for i in (0, 1, 3)])
    np.testing.assert_allclose(scene.camera_to_worlds, expected)
    np.testing.assert_allclose(scene.intrinsics[0], [[20, 0, 8], [0, 21, 6], [0, 0, 1]])
    np.testing.assert_allclose(scene.intrinsics[1], [[40, 0, 7], [0, 21, 6], [0, 0, 1]])
    assert [p.name for p in scene.depth_paths] == ["0.png", "1.png", "3.png"]
    assert scene.depth_scale == 0.001 and len(scene.label_paths) == len(scene.feature_paths) == 3
    assert [p.name for p, _ in scene.skipped] == ["frame_00002.png"]


def test_nerfstudio_depth_scale_blender_angles_and_downscaled_images(tmp_path):
    root = tmp_path / "scene"
    frames = []
    for i in range(2):
        write_image(root / f"images_4/f{i}.png", 25, 40)  # listed as images/, present only at 1/4 size
        np.save(root / f"d{i}.npy", np.ones((25, 40), np.float32))
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": gl_pose(i), "depth_file_path": f"d{i}.npy"})
    angle = 2 * math.atan(0.5)  # fx = 0.5 * w / tan(angle / 2) = w
    (root / "transforms.json").write_text(json.dumps({"camera_angle_x": angle, "w": 160, "h": 100, "frames": frames}))
    scene = read_nerfstudio(root / "transforms.json")
    assert scene.depth_scale == 1.0  # .npy depth is in scene units unless the file says otherwise
    np.testing.assert_allclose(scene.intrinsics[0], [[40, 0, 20], [0, 40, 12.5], [0, 0, 1]])
    meta = json.loads((root / "transforms.json").read_text())
    meta["depth_unit_scale_factor"] = 0.5
    (root / "transforms.json").write_text(json.dumps(meta))
    assert read_nerfstudio(root).depth_scale == 0.5


# ------------------------------------------------------------------------------------------- COLMAP

COLMAP_CAMERAS = """# Camera list with one line of data per camera:
1 SIMPLE_PINHOLE 16 12 20 8 6
2 PINHOLE 16 12 20 21 8 6
3 SIMPLE_RADIAL 16 12 22 7 5 0.01
4 RADIAL 32 24 40 16 12 0.01 0.002
5 OPENCV 16 12 20 21 8 6 0.1 0.01 0.001 0.002
"""
# image 1: 90 degrees about z (q = cos45 + sin45 k), t = (1, 2, 3); listed out of order, one empty POINTS2D line
COLMAP_IMAGES = f"""# Image list with two lines of data per image:
2 1 0 0 0 0 0 0 2 img2.png
1.0 2.0 -1
1 {math.cos(math.pi / 4)} 0 0 {math.sin(math.pi / 4)} 1 2 3 1 img1.png

3 1 0 0 0 0 0 1 3 img10.png
4.0 5.0 7 6.0 7.0 -1
4 1 0 0 0 0 0 2 4 img11.png
5.0 5.0 -1
5 1 0 0 0 0 0 3 5 img12.png
5.0 5.0 -1
"""


def write_colmap_text(model: Path) -> None:
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text(COLMAP_CAMERAS)
    (model / "images.txt").write_text(COLMAP_IMAGES)


def write_colmap_binary(model: Path, cameras_txt: str, images_txt: str) -> None:
    """COLMAP's binary layout (little-endian), written from a text model."""
    ids = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4}
    model.mkdir(parents=True)
    cams = [line.split() for line in cameras_txt.splitlines() if line and not line.startswith("#")]
    with open(model / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(cams)))
        for cam_id, name, w, h, *params in cams:
            f.write(struct.pack("<iiQQ", int(cam_id), ids[name], int(w), int(h)))
            f.write(struct.pack(f"<{len(params)}d", *map(float, params)))
    lines = [line for line in images_txt.splitlines() if not line.startswith("#")]
    with open(model / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(lines) // 2))
        for header, points in zip(lines[::2], lines[1::2]):
            t = header.split()
            f.write(struct.pack("<idddddddi", int(t[0]), *map(float, t[1:8]), int(t[8])))
            f.write(t[9].encode() + b"\x00")
            p = points.split()
            f.write(struct.pack("<Q", len(p) // 3))
            for x, y, pid in zip(p[::3], p[1::3], p[2::3]):
                f.write(struct.pack("<ddq", float(x), float(y), int(pid)))


def make_colmap_images(folder: Path) -> None:
    for name in ("img1", "img2", "img10", "img12"):
        write_image(folder / f"{name}.png", 12, 16)
    write_image(folder / "img11.png", 24, 32)


def test_colmap_text_and_binary_models_agree_and_convert_poses(tmp_path):
    write_colmap_text(tmp_path / "text" / "sparse" / "0")
    make_colmap_images(tmp_path / "text" / "images")
    write_colmap_binary(tmp_path / "bin" / "sparse" / "0", COLMAP_CAMERAS, COLMAP_IMAGES)
    make_colmap_images(tmp_path / "bin" / "images")
    text, binary = read_scene(tmp_path / "text"), read_scene(tmp_path / "bin")
    assert detect_source(tmp_path / "bin") == "colmap"
    assert [p.name for p in text.image_paths] == ["img1.png", "img2.png", "img10.png", "img11.png", "img12.png"]
    np.testing.assert_allclose(text.camera_to_worlds, binary.camera_to_worlds, atol=1e-12)
    np.testing.assert_allclose(text.intrinsics, binary.intrinsics)
    # hand-checked: R = [[0,-1,0],[1,0,0],[0,0,1]], t = (1,2,3) -> c2w = [R^T | -R^T t], centre (-2, 1, -3)
    expected = np.array([[0, 1, 0, -2], [-1, 0, 0, 1], [0, 0, 1, -3], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(text.camera_to_worlds[0], expected, atol=1e-12)
    np.testing.assert_allclose(text.camera_to_worlds[2][:3, 3], [0, 0, -1])
    K = text.intrinsics  # order img1 (SIMPLE_PINHOLE), img2 (PINHOLE), img10, img11, img12
    np.testing.assert_allclose(K[0], [[20, 0, 8], [0, 20, 6], [0, 0, 1]])
    np.testing.assert_allclose(K[1], [[20, 0, 8], [0, 21, 6], [0, 0, 1]])
    np.testing.assert_allclose(K[2], [[22, 0, 7], [0, 22, 5], [0, 0, 1]])
    np.testing.assert_allclose(K[3], [[40, 0, 16], [0, 40, 12], [0, 0, 1]])
    np.testing.assert_allclose(K[4], [[20, 0, 8], [0, 21, 6], [0, 0, 1]])
    cameras, images = read_colmap_model(tmp_path / "bin" / "sparse" / "0")
    assert cameras[4].model == "RADIAL" and [i.name for i in images][:2] == ["img2.png", "img1.png"]


def test_colmap_reconstruction_folder_and_given_images_dir(tmp_path):
    write_colmap_text(tmp_path / "scene" / "reconstruction")
    make_colmap_images(tmp_path / "elsewhere")
    scene = read_colmap(tmp_path / "scene", images_dir=tmp_path / "elsewhere")
    assert len(scene) == 5 and scene.image_paths[0].parent == tmp_path / "elsewhere"
    make_colmap_images(tmp_path / "scene" / "images")
    assert read_scene(tmp_path / "scene" / "reconstruction").name == "scene"


def test_colmap_image_at_another_resolution_scales_intrinsics(tmp_path):
    write_colmap_text(tmp_path / "s" / "sparse" / "0")
    make_colmap_images(tmp_path / "s" / "images")
    write_image(tmp_path / "s" / "images" / "img1.png", 24, 32)  # the model says 16x12
    np.testing.assert_allclose(read_scene(tmp_path / "s").intrinsics[0], [[40, 0, 16], [0, 40, 12], [0, 0, 1]])


# ----------------------------------------------------------------------------------------- 7-Scenes


def make_7scenes(root: Path, sequences: int = 2, frames: int = 2) -> None:
    for s in range(1, sequences + 1):
        seq = root / f"seq-{s:02d}"
        for f in range(frames):
            write_image(seq / f"frame-{f:06d}.color.png", 48, 64)
            Image.fromarray(np.full((48, 64), 1000 * s, np.uint16)).save(seq / f"frame-{f:06d}.depth.png")
            pose = np.eye(4)
            pose[:3, 3] = (s, f, 0)
            np.savetxt(seq / f"frame-{f:06d}.pose.txt", pose)
    (root / "TrainSplit.txt").write_text("sequence2\n")


def test_7scenes_layout_and_sequence_selection(tmp_path):
    make_7scenes(tmp_path / "stairs")
    scene = read_scene(tmp_path / "stairs")
    assert len(scene) == 4 and scene.name == "stairs" and scene.depth_scale == 0.001
    assert scene.frame_ids == [f"seq-0{s}/frame-00000{f}" for s in (1, 2) for f in (0, 1)]
    np.testing.assert_allclose(scene.intrinsics[0], [[58.5, 0, 32], [0, 58.5, 24], [0, 0, 1]])
    np.testing.assert_allclose(scene.camera_to_worlds[3][:3, 3], [2, 1, 0])
    assert [p.name for p in scene.depth_paths][:1] == ["frame-000000.depth.png"]
    assert read_7scenes(tmp_path / "stairs", sequences=[2]).frame_ids == ["seq-02/frame-000000", "seq-02/frame-000001"]
    assert len(read_7scenes(tmp_path / "stairs", sequences="train")) == 2
    assert read_scene(tmp_path / "stairs" / "seq-01").name == "stairs"

    (tmp_path / "stairs" / "seq-01" / "frame-000001.pose.txt").write_text("inf " * 16)
    with pytest.warns(SceneWarning, match=r"seq-01/frame-000001\.color\.png \(no readable pose\)"):
        assert len(read_7scenes(tmp_path / "stairs")) == 3


# -------------------------------------------------------------------------------- detection, multi


def test_detect_source_and_multiscene_root(tmp_path):
    root = tmp_path / "root"
    write_image(root / "a_folder" / "images" / "0.png")
    write_image(root / "a_folder" / "images" / "1.png")
    make_nerfstudio_scene(root / "b_nerfstudio", 2, extras=False)
    make_7scenes(root / "c_7scenes" / "stairs", sequences=1)  # found one level down
    dl3dv = root / "batch" / "d_dl3dv"
    for i in range(2):
        write_image(dl3dv / "images_4" / f"frame_{i:05d}.png", 10, 10)
    (dl3dv / "transforms.json").write_text(json.dumps(
        {"fl_x": 40, "fl_y": 40, "cx": 20, "cy": 20, "w": 40, "h": 40,
         "frames": [{"file_path": f"images/frame_{i:05d}.png", "transform_matrix": gl_pose(i)} for i in range(2)]}))
    write_video(root / "e_clip.mp4", 3)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no scene here")
    (root / "README.md").write_text("ignored")

    assert detect_source(root / "a_folder") == "images"
    assert detect_source(root / "b_nerfstudio") == "nerfstudio"
    assert detect_source(root / "c_7scenes" / "stairs") == "7scenes"
    assert detect_source(root / "e_clip.mp4") == "video"
    assert detect_source(root) is None
    with pytest.warns(SceneWarning, match=r"1 folder\(s\) are not scenes .*notes \(no images"):
        scenes = read_scenes(root)
    assert [s.name for s in scenes] == ["a_folder", "b_nerfstudio", "d_dl3dv", "stairs", "e_clip"]
    assert [len(s) for s in scenes] == [2, 2, 2, 2, 3]
    np.testing.assert_allclose(scenes[2].intrinsics[0], [[10, 0, 5], [0, 10, 5], [0, 0, 1]])  # 1/4 size
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the video's frame cache is not taken for a scene
        assert len(read_scenes(root / "a_folder")) == 1


# ------------------------------------------------------------------------------------- real scenes

REAL_SCENES = [
    # folder, frames, posed, depth
    ("fox", 50, True, False),
    ("maupertuis_colmap_kapture", 4, True, False),
    ("7scenes_stairs_kapture/stairs", 12, True, True),
    ("tum_fr3_long_office_household_17", 17, False, False),
    ("vggt_room", 8, False, False),
    ("scannet_pairs_superglue", 30, False, False),
]


@pytest.mark.realdata
@pytest.mark.parametrize("folder, frames, posed, depth", REAL_SCENES)
def test_real_scenes_load(shared_data, folder, frames, posed, depth):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        scene = read_scene(shared_data / folder)
    assert len(scene) == frames and scene.has_poses == posed and (scene.depth_paths is not None) == depth
    assert all(p.is_file() for p in scene.image_paths)
    if posed:
        assert np.isfinite(scene.camera_to_worlds).all() and scene.intrinsics.shape == (frames, 3, 3)
        np.testing.assert_allclose(np.linalg.det(scene.camera_to_worlds[:, :3, :3]), 1.0, atol=1e-3)


@pytest.mark.realdata
def test_real_fox_names_the_17_missing_frames(shared_data):
    meta = json.loads((shared_data / "fox" / "transforms.json").read_text())
    missing = [f["file_path"] for f in meta["frames"] if not (shared_data / "fox" / f["file_path"]).exists()]
    assert len(missing) == 17
    with pytest.warns(SceneWarning) as record:
        scene = read_scene(shared_data / "fox")
    assert len(record) == 1 and all(name in str(record[0].message) for name in missing)
    kept = [f for f in meta["frames"] if f["file_path"] not in missing]
    expected = np.stack([np.array(f["transform_matrix"]) @ GL_TO_CV for f in kept])
    np.testing.assert_allclose(scene.camera_to_worlds, expected)
    assert scene.image_sizes.tolist()[0] == [1920, 1080]


@pytest.mark.realdata
def test_real_colmap_poses_reproject_the_sfm_points(shared_data):
    """Project maupertuis' 3D points with the read cameras; they must land on their 2D observations."""
    model = shared_data / "maupertuis_colmap_kapture" / "reconstruction"
    lines = [line for line in (model / "images.txt").read_text().splitlines() if not line.startswith("#")]
    observations = {}
    for header, points in zip(lines[::2], lines[1::2]):
        values = points.split()
        observations[int(header.split()[0])] = (header.split()[9], np.array(values, float).reshape(-1, 3)[:, :2])
    scene = read_scene(model.parent)
    index = {p.name: i for i, p in enumerate(scene.image_paths)}
    errors = []
    for line in (model / "points3D.txt").read_text().splitlines()[3:60]:
        values = line.split()
        xyz = np.array(values[1:4], float)
        for image_id, point_idx in zip(values[8::2], values[9::2]):
            name, xy = observations[int(image_id)]
            i = index[name]
            w2c = np.linalg.inv(scene.camera_to_worlds[i])
            cam = w2c[:3, :3] @ xyz + w2c[:3, 3]
            uv = (scene.intrinsics[i] @ cam)[:2] / cam[2]
            errors.append(np.linalg.norm(uv - xy[int(point_idx)]))
    assert len(errors) > 50 and np.median(errors) < 2.0


@pytest.mark.realdata
def test_real_multiscene_root_finds_all_six(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SceneWarning)
        scenes = read_scenes(shared_data)
    assert sorted(len(s) for s in scenes) == [4, 8, 12, 17, 30, 50]
