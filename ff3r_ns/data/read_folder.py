"""Unposed sources: a folder of images, and a video cut into frames."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ff3r_ns.data.images import IMAGE_EXTENSIONS, list_images
from ff3r_ns.data.read_common import SceneError, require_path, require_views, screen_images
from ff3r_ns.data.scene import SceneData

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
"""File suffixes (lower case) that count as videos."""

DEFAULT_NUM_FRAMES = 32
"""Frames taken from a video when neither a stride nor a count is given."""

_FRAME_QUALITY = 95  # JPEG quality of extracted frames
_MANIFEST = "frames.json"  # written last into a frame folder; its presence marks a complete extraction


def find_image_folder(path: Path) -> Optional[Path]:
    """``path`` itself when it holds images, else its ``images/`` subfolder when that does, else None."""
    for folder in (path, path / "images"):
        if list_images(folder):
            return folder
    return None


def read_image_folder(path: str | Path, verify: bool = True) -> SceneData:
    """An unposed scene from a folder of images (``path`` or ``path/images``), in natural file order.

    Args:
        path: the folder.
        verify: fully decode every image to find truncated files (otherwise headers only).
    """
    path = require_path(path, "image folder")
    folder = find_image_folder(path)
    if folder is None:
        suffixes = "/".join(IMAGE_EXTENSIONS)
        raise SceneError(
            f"no images ({suffixes}) in {path} or {path / 'images'}: put the views of the scene there, "
            "or pass the folder that holds them"
        )
    candidates = list_images(folder)
    source = f"image folder {folder}"
    keep, sizes, skipped = screen_images(candidates, source, folder, verify)
    image_paths = [candidates[i] for i in keep]
    require_views(image_paths, source)
    return SceneData(name=path.name, root=path, image_paths=image_paths, image_sizes=sizes, skipped=skipped)


def _video_error(video: Path, err: Exception) -> SceneError:
    return SceneError(
        f"cannot decode video {video} ({err}): check that it plays, re-encode it "
        "(e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`), or extract its frames into an image folder"
    )


def _frame_indices(count: int, stride: Optional[int], num_frames: Optional[int]) -> list[int]:
    """Source frame indices to keep: every ``stride``-th, or ``num_frames`` spread evenly."""
    if stride is not None:
        return list(range(0, count, stride))
    picks = np.round(np.linspace(0, count - 1, min(num_frames, count))).astype(int)
    return sorted(set(picks.tolist()))


def extract_video_frames(
    video: str | Path,
    output_dir: str | Path | None = None,
    stride: Optional[int] = None,
    num_frames: Optional[int] = None,
) -> list[Path]:
    """Decode selected frames of a video into JPEG files, once; later calls reuse them.

    Exactly one of ``stride`` (every stride-th frame, from the first) and ``num_frames`` (that many
    frames spread evenly from the first to the last) may be given; with neither,
    ``num_frames=DEFAULT_NUM_FRAMES``. The selection depends only on the video and these arguments.

    Args:
        video: the video file (any container/codec PyAV decodes).
        output_dir: folder for the frames; default ``<video stem>_frames/<stride-S | count-N>/`` beside
            the video. A folder holding frames of other settings or of an older video is refilled.
        stride: keep every ``stride``-th frame.
        num_frames: keep this many frames (all of them if the video is shorter).

    Returns:
        The frame files ``frame_<source index, 6 digits>.jpg``, in time order.
    """
    video = require_path(video, "video")
    if stride is not None and num_frames is not None:
        raise SceneError(f"video {video}: give a frame stride or a frame count, not both")
    if stride is None and num_frames is None:
        num_frames = DEFAULT_NUM_FRAMES
    if (stride is not None and stride < 1) or (num_frames is not None and num_frames < 1):
        raise SceneError(f"video {video}: the frame stride and count must be at least 1")
    setting = f"stride-{stride}" if stride is not None else f"count-{num_frames}"
    folder = Path(output_dir) if output_dir is not None else video.parent / f"{video.stem}_frames" / setting
    stat = video.stat()
    stamp = {"video": video.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "setting": setting}

    manifest = folder / _MANIFEST
    if manifest.is_file():
        try:
            cached = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            cached = {}
        paths = [folder / name for name in cached.get("frames", [])]
        if cached.get("stamp") == stamp and paths and all(p.is_file() for p in paths):
            return paths

    try:
        import av
    except ImportError as err:  # pragma: no cover - av ships with nerfstudio's dependencies
        raise SceneError(f"reading video {video} needs PyAV: `pip install av`") from err
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in [manifest, *folder.glob("frame_*.jpg")]:
            old.unlink(missing_ok=True)
    except OSError as err:
        raise SceneError(f"cannot write video frames to {folder} ({err}): pass a writable output folder") from err

    paths = []
    try:
        with av.open(str(video)) as container:  # first pass: count frames from packets, without decoding
            if not container.streams.video:
                raise SceneError(f"{video} has no video stream: pass a video file, or a folder of images")
            count = sum(1 for packet in container.demux(container.streams.video[0]) if packet.size > 0)
        wanted = set(_frame_indices(count, stride, num_frames))
        with av.open(str(video)) as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index in wanted:
                    path = folder / f"frame_{index:06d}.jpg"
                    frame.to_image().save(path, quality=_FRAME_QUALITY)
                    paths.append(path)
    except av.FFmpegError as err:
        raise _video_error(video, err) from err
    if not paths:
        raise _video_error(video, ValueError("no frame could be decoded"))
    tmp = folder / (_MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "frames": [p.name for p in paths]}, indent=1))
    os.replace(tmp, manifest)
    return paths


def read_video(
    path: str | Path,
    output_dir: str | Path | None = None,
    stride: Optional[int] = None,
    num_frames: Optional[int] = None,
) -> SceneData:
    """An unposed scene from a video: its frames are extracted by ``extract_video_frames``."""
    video = require_path(path, "video")
    frames = extract_video_frames(video, output_dir, stride, num_frames)
    source = f"video {video}"
    keep, sizes, skipped = screen_images(frames, source, frames[0].parent, verify=False)
    image_paths = [frames[i] for i in keep]
    require_views(image_paths, source, "Use a longer video, a smaller stride, or a larger frame count.")
    return SceneData(name=video.stem, root=video.parent, image_paths=image_paths, image_sizes=sizes, skipped=skipped)
