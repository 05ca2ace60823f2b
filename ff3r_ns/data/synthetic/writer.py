"""Writing a room as a nerfstudio scene folder (layout in the package docstring)."""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ff3r_ns.data.classes import CLASS_NAMES
from ff3r_ns.data.synthetic.config import FORMAT_VERSION, RoomConfig
from ff3r_ns.data.synthetic.layout import generate_room
from ff3r_ns.data.synthetic.raytrace import PackedRoom
from ff3r_ns.data.synthetic.render import render_view
from ff3r_ns.data.synthetic.teacher import teacher_view
from ff3r_ns.data.synthetic.trajectory import make_cameras
from ff3r_ns.network.cameras import opencv_to_opengl_c2w

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: bit-identical .npz files


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed``, but without the time stamps that make files differ run to run."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())


_SUBDIRS = ("images", "depth", "labels", "features")


def _unfinished_scene(out_dir: Path) -> bool:
    """A scene whose writing stopped before its transforms.json: nothing but our folders of frame files."""
    entries = list(out_dir.iterdir())
    return all(e.is_dir() and e.name in _SUBDIRS for e in entries) and all(
        f.is_file() and f.name.startswith("frame_") for e in entries for f in e.iterdir()
    )


def _prepare_output(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another output path")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        meta = out_dir / "transforms.json"
        try:
            previous = "ff3r_synthetic" in json.loads(meta.read_text())
        except (OSError, ValueError):
            previous = _unfinished_scene(out_dir)
        if not previous:
            raise FileExistsError(
                f"{out_dir} is not empty and is not a synthetic scene written by ff3r_ns (no transforms.json "
                f"with an 'ff3r_synthetic' entry); refusing to overwrite it. Pass an empty or new folder."
            )
        for sub in _SUBDIRS:  # a previous synthetic scene: drop its frames so none is left stale
            for file in (out_dir / sub).glob("frame_*"):
                file.unlink()
        meta.unlink(missing_ok=True)
    for sub in _SUBDIRS:
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def write_scene(out_dir: str | Path, config: RoomConfig, progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Generate, render and write a nerfstudio scene (layout in the module docstring).

    Refuses (``FileExistsError``) to write into a non-empty folder that is not a previous synthetic
    scene; a previous one is replaced. ``progress(done, total)`` is called after each view.
    Returns the path of ``transforms.json``.
    """
    out_dir = Path(out_dir)
    _prepare_output(out_dir)
    room = generate_room(config)
    cameras = make_cameras(room, config)
    pk = PackedRoom.build(room)
    frames = []
    for i, c2w in enumerate(cameras.camera_to_worlds):
        view = render_view(pk, c2w, cameras.intrinsics, cameras.width, cameras.height, config.shadows)
        name = f"frame_{i:05d}"
        Image.fromarray(view["rgb"]).save(out_dir / "images" / f"{name}.png")
        depth_mm = np.clip(np.round(view["depth"].astype(np.float64) * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(depth_mm).save(out_dir / "depth" / f"{name}.png")
        Image.fromarray(view["labels"]).save(out_dir / "labels" / f"{name}.png")
        _save_npz(out_dir / "features" / f"{name}.npz", teacher_view(view["labels"], config.seed, i, config))
        gl = opencv_to_opengl_c2w(torch.from_numpy(c2w)).numpy()
        frames.append(
            {
                "file_path": f"images/{name}.png",
                "transform_matrix": gl.tolist(),
                "depth_file_path": f"depth/{name}.png",
                "semantic_file_path": f"labels/{name}.png",
                "feature_file_path": f"features/{name}.npz",
            }
        )
        if progress is not None:
            progress(i + 1, len(cameras))
    K = cameras.intrinsics
    meta = {
        "camera_model": "OPENCV",
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "w": cameras.width,
        "h": cameras.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "depth_unit_scale_factor": 0.001,
        "ff3r_synthetic": {
            "seed": config.seed,
            "classes": list(CLASS_NAMES),
            "version": FORMAT_VERSION,
            "config": asdict(config),
        },
        "frames": frames,
    }
    path = out_dir / "transforms.json"
    path.write_text(json.dumps(meta, indent=2))
    return path


def _write_missing(job: tuple[Path, RoomConfig]) -> Path:
    path, config = job
    if not (path / "transforms.json").is_file():
        write_scene(path, config)
    return path


def write_scenes(
    jobs: Sequence[tuple[str | Path, RoomConfig]], workers: int = 1, progress: Optional[Callable[[int, int], None]] = None
) -> list[Path]:
    """Writes each ``(folder, config)`` whose folder holds no ``transforms.json`` yet, in ``workers`` processes of
    one thread each (torch threads inside each would oversubscribe the cores: on 16 cores, 16 processes of 16
    threads rendered 20x slower); returns the folders in order. ``progress(done, total)`` follows each room."""
    jobs = [(Path(path), config) for path, config in jobs]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            written = pool.map(_write_missing, jobs)
            for i, _ in enumerate(written, start=1):
                if progress is not None:
                    progress(i, len(jobs))
    else:
        for i, job in enumerate(jobs, start=1):
            _write_missing(job)
            if progress is not None:
                progress(i, len(jobs))
    return [path for path, _ in jobs]
