"""Scene readers: every source FF3R accepts, auto-detection, and folders of many scenes.

Sources (each reader returns a ``SceneData``, see ``ff3r_ns.data.scene`` for the conventions):

====================  ==========================================================  ===================
source                recognised by                                               reader
====================  ==========================================================  ===================
ScanNet               ``color/``, ``pose/`` and ``intrinsic/`` (SensReader export)  ``read_scannet``
ScanNet++             ``dslr/nerfstudio/`` (the scene folder or its ``dslr``)     ``read_scannetpp``
nerfstudio            ``transforms.json`` (the folder or the file), or            ``read_nerfstudio``
                      ``colmap/transforms.json`` (a DL3DV-10K scene folder)
COLMAP                ``cameras``/``images`` ``.bin|.txt`` in ``.``, ``sparse/0``, ``read_colmap``
                      ``sparse``, ``reconstruction`` or ``colmap/sparse/0``
7-Scenes              ``seq-*/frame-*.color.*``                                   ``read_7scenes``
video                 a file ending in one of ``VIDEO_EXTENSIONS``                ``read_video``
image folder          images in the folder or in its ``images/`` subfolder        ``read_image_folder``
====================  ==========================================================  ===================

A folder that matches none of them but holds exactly one subfolder is read through that subfolder.
Errors are ``SceneError`` (a ``ValueError``), skipped frames are reported with one ``SceneWarning``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, get_args

from ff3r_ns.data.images import IMAGE_EXTENSIONS, natural_sort_key
from ff3r_ns.data.read_7scenes import Sequences, is_7scenes, read_7scenes
from ff3r_ns.data.read_colmap import find_colmap_model, read_colmap, read_colmap_model
from ff3r_ns.data.read_common import MIN_VIEWS, SceneError, SceneWarning, name_list, require_path, warn
from ff3r_ns.data.read_folder import (
    DEFAULT_NUM_FRAMES,
    VIDEO_EXTENSIONS,
    extract_video_frames,
    find_image_folder,
    read_image_folder,
    read_video,
)
from ff3r_ns.data.read_nerfstudio import TRANSFORMS_FILE, read_nerfstudio
from ff3r_ns.data.read_scannet import is_scannet, read_scannet
from ff3r_ns.data.read_scannetpp import is_scannetpp, read_scannetpp
from ff3r_ns.data.scene import SceneData

__all__ = [
    "DEFAULT_NUM_FRAMES",
    "MIN_VIEWS",
    "SceneError",
    "SceneWarning",
    "Source",
    "VIDEO_EXTENSIONS",
    "detect_source",
    "extract_video_frames",
    "read_7scenes",
    "read_colmap",
    "read_colmap_model",
    "read_image_folder",
    "read_nerfstudio",
    "read_scannet",
    "read_scannetpp",
    "read_scene",
    "read_scenes",
    "read_video",
]

Source = Literal["scannet", "scannetpp", "nerfstudio", "colmap", "7scenes", "video", "images"]

DL3DV_TRANSFORMS = Path("colmap") / TRANSFORMS_FILE
"""Where a DL3DV-10K scene folder (as in DL3DV-10K-Sample, beside its video.mp4) keeps its cameras."""


def detect_source(path: str | Path) -> Optional[Source]:
    """Which reader understands ``path`` (checked in the order of the table above), or None."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "nerfstudio"
        return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else None
    if not path.is_dir():
        return None
    if is_scannet(path):
        return "scannet"
    if is_scannetpp(path):
        return "scannetpp"
    if (path / TRANSFORMS_FILE).is_file() or (path / DL3DV_TRANSFORMS).is_file():
        return "nerfstudio"
    if find_colmap_model(path) is not None:
        return "colmap"
    if is_7scenes(path):
        return "7scenes"
    return "images" if find_image_folder(path) is not None else None


def _subfolders(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_sort_key)


def _only_scene_subfolder(path: Path) -> Optional[Path]:
    """The single subfolder of ``path`` when there is exactly one and it is a scene, else None."""
    children = _subfolders(path) if path.is_dir() else []
    return children[0] if len(children) == 1 and detect_source(children[0]) is not None else None


def read_scene(
    path: str | Path,
    source: Optional[Source] = None,
    *,
    verify: bool = True,
    images_dir: str | Path | None = None,
    sequences: Sequences = None,
    stride: Optional[int] = None,
    num_frames: Optional[int] = None,
    frames_dir: str | Path | None = None,
    labels_tsv: str | Path | None = None,
) -> SceneData:
    """Read one scene from any supported source.

    Args:
        path: a scene folder, a ``transforms.json``, or a video file.
        source: force a reader instead of detecting it.
        verify: fully decode every image to find truncated files (otherwise headers only).
        images_dir: COLMAP only: the image folder, when it is not ``images/`` beside the model.
        sequences: 7-Scenes only: sequences to read (see ``read_7scenes``).
        stride, num_frames, frames_dir: video only (see ``extract_video_frames``).
        labels_tsv: ScanNet only: ``scannetv2-labels.combined.tsv``, when it is not in the scene folder or above.
    """
    path = require_path(path)
    if source is None:
        source = detect_source(path)
    if source is None and path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise SceneError(
                f"{path} is a single image; FF3R needs at least {MIN_VIEWS} views of a scene: pass the folder "
                "that holds all the views"
            )
        raise SceneError(
            f"{path} is not a scene: pass a folder of images, a video ({', '.join(VIDEO_EXTENSIONS)}), "
            f"a {TRANSFORMS_FILE}, or a COLMAP or 7-Scenes scene folder"
        )
    if source is None:
        child = _only_scene_subfolder(path)
        if child is not None:
            scene = read_scene(child, verify=verify, images_dir=images_dir, sequences=sequences, labels_tsv=labels_tsv)
            scene.name = path.name
            return scene
        raise SceneError(
            f"no scene in {path}: no images ({'/'.join(IMAGE_EXTENSIONS)}) there or in {path / 'images'}, no "
            f"{TRANSFORMS_FILE}, COLMAP model, ScanNet, ScanNet++ or 7-Scenes scene. Pass the folder that holds the views "
            "(a folder of several scenes is read with read_scenes / the ff3r-multiscene dataparser)"
        )
    if source == "scannet":
        return read_scannet(path, labels_tsv=labels_tsv, verify=verify)
    if source == "scannetpp":
        return read_scannetpp(path, verify=verify)
    if source == "nerfstudio":
        if path.is_dir() and not (path / TRANSFORMS_FILE).is_file() and (path / DL3DV_TRANSFORMS).is_file():
            scene = read_nerfstudio(path / DL3DV_TRANSFORMS, verify=verify)
            scene.name = path.name  # the scene's hash, not "colmap"
            return scene
        return read_nerfstudio(path, verify=verify)
    if source == "colmap":
        return read_colmap(path, images_dir=images_dir, verify=verify)
    if source == "7scenes":
        return read_7scenes(path, sequences=sequences, verify=verify)
    if source == "video":
        return read_video(path, output_dir=frames_dir, stride=stride, num_frames=num_frames)
    if source == "images":
        return read_image_folder(path, verify=verify)
    raise SceneError(f"unknown scene source {source!r}; use one of {', '.join(get_args(Source))}")


def read_scenes(
    root: str | Path,
    max_depth: int = 2,
    *,
    verify: bool = True,
    stride: Optional[int] = None,
    num_frames: Optional[int] = None,
    labels_tsv: str | Path | None = None,
) -> list[SceneData]:
    """Every scene under ``root``, in natural order of their paths (e.g. a DL3DV or ScanNet folder).

    A subfolder (or video file) that ``read_scene`` recognises is one scene; any other subfolder is
    searched in turn, down to ``max_depth`` levels below ``root``. ``root`` itself, when it is a scene,
    gives a list of one. Folders that are not scenes, or whose reading failed, are named
    with their reason in one ``SceneWarning``; ``SceneError`` if no scene is found at all.
    """
    root = require_path(root, "scene root")
    if detect_source(root) is not None:
        return [read_scene(root, verify=verify, stride=stride, num_frames=num_frames, labels_tsv=labels_tsv)]
    scenes: list[SceneData] = []
    rejected: list[tuple[Path, str]] = []

    def visit(folder: Path, depth: int) -> None:
        entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=natural_sort_key)
        videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
        frame_caches = {f"{video.stem}_frames" for video in videos}  # written by extract_video_frames
        for entry in entries:
            if (entry.is_file() and entry not in videos) or entry.name in frame_caches:
                continue
            if entry.is_dir() and detect_source(entry) is None and depth < max_depth and _subfolders(entry):
                visit(entry, depth + 1)
            elif detect_source(entry) is not None or _only_scene_subfolder(entry) is not None:
                try:
                    scenes.append(
                        read_scene(entry, verify=verify, stride=stride, num_frames=num_frames, labels_tsv=labels_tsv)
                    )
                except SceneError as err:
                    rejected.append((entry, str(err)))
            else:
                rejected.append((entry, "no images, transforms.json, COLMAP model, ScanNet(++) or 7-Scenes scene"))

    visit(root, 1)
    report = name_list([f"{p.relative_to(root)} ({reason})" for p, reason in rejected])
    if not scenes:
        raise SceneError(f"no scenes found under {root} (searched {max_depth} levels deep): {report or 'it is empty'}")
    if rejected:
        warn(f"{root}: {len(rejected)} folder(s) are not scenes and were skipped: {report}")
    return scenes
