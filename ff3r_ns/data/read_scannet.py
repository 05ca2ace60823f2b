"""ScanNet scenes as its SensReader exports them, with the 2D label archives.

A scene folder ``sceneXXXX_YY`` holds (``<i>`` is the frame number)::

    color/<i>.jpg                  colour images (1296x968 as distributed)
    depth/<i>.png                  uint16 depth in millimetres (640x480), registered to colour
    pose/<i>.txt                   4x4 camera-to-world in metres, OpenCV axes; -inf or NaN where tracking failed
    intrinsic/intrinsic_color.txt  4x4, upper-left 3x3 is the colour K
    intrinsic/intrinsic_depth.txt  4x4, upper-left 3x3 is the depth K
    label-filt/<i>.png             uint16 raw ScanNet category ids at the depth resolution (optional)

plus ``scannetv2-labels.combined.tsv`` (in the scene folder, a parent, or given as ``labels_tsv``), whose
``id`` column is the raw id and ``nyu40id`` its NYU40 id; ``ff3r_ns.data.classes`` maps those to the 8
classes. Depth and labels stay on disk as they are: the scene carries the depth camera's K as
``map_intrinsics`` and the raw-id table as ``label_table``, and ``ff3r_ns.data.views`` resamples both into
the colour frame when a view is loaded (``ff3r_ns.data.sensor_maps``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np

from ff3r_ns.data.classes import IGNORE, nyu40_to_class
from ff3r_ns.data.images import natural_sort_key
from ff3r_ns.data.read_common import SceneError, name_list, require_path, require_views, screen_images, warn
from ff3r_ns.data.scene import SceneData
from ff3r_ns.data.sensor_maps import UNLISTED, LabelTable

LABELS_TSV = "scannetv2-labels.combined.tsv"
TSV_SEARCH_LEVELS = 3
"""How many parent folders above the scene are searched for ``LABELS_TSV``."""
_MM_TO_M = 0.001
_FOLDERS = {"color": ".jpg", "depth": ".png", "pose": ".txt", "label-filt": ".png"}
_OPTIONAL = ("depth", "label-filt")  # a scene may come without them; when present they must match


def is_scannet(path: Path) -> bool:
    """True for a folder in the SensReader layout (``color/``, ``pose/`` and ``intrinsic/``)."""
    return all((path / name).is_dir() for name in ("color", "pose", "intrinsic"))


def find_labels_tsv(scene: Path, given: Optional[Path] = None) -> Path:
    """``given``, else ``LABELS_TSV`` in ``scene`` or one of its ``TSV_SEARCH_LEVELS`` parents."""
    if given is not None:
        return require_path(given, "ScanNet label table")
    searched = [scene, *list(scene.parents)[:TSV_SEARCH_LEVELS]]
    for folder in searched:
        if (folder / LABELS_TSV).is_file():
            return folder / LABELS_TSV
    raise SceneError(
        f"ScanNet scene {scene} has label-filt/ but no {LABELS_TSV}: looked in {', '.join(map(str, searched))}. "
        f"Pass its path as labels_tsv (read_scene / read_scannet), --labels-tsv (the ff3r-scannet dataparser, "
        "scripts/evaluate.py), or copy it into the scene folder"
    )


def read_label_table(tsv: Path) -> LabelTable:
    """The raw-id -> class table of ``scannetv2-labels.combined.tsv`` (raw id 0 is unlabelled)."""
    with open(tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"id", "nyu40id"} <= set(rows[0]):
        raise SceneError(f"{tsv}: expected a tab-separated table with columns 'id' and 'nyu40id'")
    listed: dict[int, int] = {}
    for row in rows:
        try:
            listed[int(row["id"])] = int(row["nyu40id"])
        except (TypeError, ValueError):
            continue  # a row without numbers lists nothing
    classes = np.full(max(listed, default=0) + 1, UNLISTED, dtype=np.int64)
    ids = np.fromiter(listed, dtype=np.int64, count=len(listed))
    classes[ids] = nyu40_to_class(np.fromiter(listed.values(), dtype=np.int64, count=len(listed)))
    classes[0] = IGNORE
    return LabelTable(classes=classes, source=tsv)


def _intrinsics(file: Path) -> np.ndarray:
    try:
        matrix = np.loadtxt(file, dtype=np.float64)
    except (OSError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape not in ((4, 4), (3, 3)) or not np.isfinite(matrix).all():
        raise SceneError(f"{file}: expected a 4x4 (or 3x3) intrinsic matrix as exported by ScanNet's SensReader")
    return matrix[:3, :3]


def _pose(file: Path) -> Optional[np.ndarray]:
    try:
        pose = np.loadtxt(file, dtype=np.float64)
    except (OSError, ValueError):
        return None
    return pose if pose.shape == (4, 4) and np.isfinite(pose).all() else None


def read_scannet(path: str | Path, labels_tsv: str | Path | None = None, verify: bool = True) -> SceneData:
    """A ScanNet scene folder (see the module docstring).

    Frames missing from one of the folders present are dropped with one warning naming them, frames
    with an invalid pose with another; ``label-filt/`` needs the label table (``SceneError`` saying where
    it was looked for otherwise).
    """
    path = require_path(path, "ScanNet scene")
    if not is_scannet(path):
        raise SceneError(f"{path} is not a ScanNet scene: expected color/, pose/ and intrinsic/ as SensReader exports")
    folders = [name for name in _FOLDERS if name not in _OPTIONAL or (path / name).is_dir()]
    stems = {name: {p.stem for p in (path / name).glob(f"*{_FOLDERS[name]}")} for name in folders}
    common = sorted(set.intersection(*stems.values()), key=natural_sort_key)
    partial = sorted(set.union(*stems.values()) - set(common), key=natural_sort_key)
    if partial:
        lacks = [f"{s} (no {'/'.join(n for n in folders if s not in stems[n])})" for s in partial]
        warn(f"ScanNet scene {path}: dropped {len(partial)} frame(s) not present in all of "
             f"{', '.join(folders)}: {name_list(lacks)}")

    frames, poses, bad_poses = [], [], []
    for stem in common:
        pose = _pose(path / "pose" / f"{stem}.txt")
        if pose is None:
            bad_poses.append(stem)
        else:
            frames.append(stem)
            poses.append(pose)
    if bad_poses:
        warn(f"ScanNet scene {path}: skipped {len(bad_poses)} frame(s) whose pose is not a finite 4x4 matrix "
             f"(-inf or NaN where tracking failed): {name_list(bad_poses)}")
    skipped = [(path / "color" / f"{s}.jpg", "missing from a folder") for s in partial]
    skipped += [(path / "color" / f"{s}.jpg", "invalid pose") for s in bad_poses]

    source = f"ScanNet scene {path}"
    colors = [path / "color" / f"{s}.jpg" for s in frames]
    keep, sizes, unreadable = screen_images(colors, source, path, verify)
    require_views([colors[k] for k in keep], source, "Check its color/ and pose/ folders.")
    frames = [frames[k] for k in keep]
    n = len(frames)

    def maps(folder: str) -> Optional[list[Path]]:
        return [path / folder / f"{s}.png" for s in frames] if folder in folders else None

    has_maps = "depth" in folders or "label-filt" in folders
    return SceneData(
        name=path.name,
        root=path,
        image_paths=[colors[k] for k in keep],
        image_sizes=sizes,
        camera_to_worlds=np.stack([poses[k] for k in keep]),
        intrinsics=np.repeat(_intrinsics(path / "intrinsic" / "intrinsic_color.txt")[None], n, axis=0),
        depth_paths=maps("depth"),
        depth_scale=_MM_TO_M,
        label_paths=maps("label-filt"),
        label_table=read_label_table(find_labels_tsv(path, labels_tsv)) if "label-filt" in folders else None,
        map_intrinsics=(
            np.repeat(_intrinsics(path / "intrinsic" / "intrinsic_depth.txt")[None], n, axis=0) if has_maps else None
        ),
        frame_ids=frames,
        skipped=skipped + unreadable,
    )
