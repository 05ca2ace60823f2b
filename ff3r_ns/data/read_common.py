"""What every scene reader shares: its error and warning types, and the rules for unusable frames.

Rules (one place, so that all sources behave alike):
- a path that does not exist, or holds nothing a reader understands, raises ``SceneError`` naming the
  path and saying what to do;
- frames whose files are missing or cannot be decoded are skipped with ONE ``SceneWarning`` that names
  all of them, and recorded in ``SceneData.skipped``;
- a scene needs at least ``MIN_VIEWS`` usable frames, otherwise ``SceneError``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ff3r_ns.data.images import check_images, image_size

MIN_VIEWS = 2
"""FF3R reconstructs from two or more views of a scene."""

_MAX_NAMED = 100  # a warning names at most this many files, then counts the rest


class SceneError(ValueError):
    """A scene cannot be read; the message names the path and says how to fix it."""


class SceneWarning(UserWarning):
    """Something in a scene was skipped; the message names what and why."""


def warn(message: str) -> None:
    """Emit a ``SceneWarning`` attributed to the caller of the reader."""
    warnings.warn(message, SceneWarning, stacklevel=3)


def display(path: Path, root: Path | None = None) -> str:
    """``path`` relative to ``root`` when it lies inside it, else as given."""
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return str(path)


def name_list(items: Sequence[str]) -> str:
    """Comma-separated names, shortened after ``_MAX_NAMED`` entries."""
    shown = ", ".join(items[:_MAX_NAMED])
    rest = len(items) - _MAX_NAMED
    return shown + (f" ... and {rest} more" if rest > 0 else "")


def require_path(path: str | Path, what: str = "scene") -> Path:
    """``path`` as an absolute ``Path``; ``SceneError`` if it does not exist."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SceneError(
            f"{what} path {path} does not exist: check the spelling, or pass the folder that holds the images"
        )
    return path.resolve()


def screen_images(
    paths: Sequence[Path], source: str, root: Path | None = None, verify: bool = True
) -> tuple[list[int], np.ndarray, list[tuple[Path, str]]]:
    """Drop images that cannot be read, warning once, and measure the rest.

    Args:
        paths: candidate image files, one per frame.
        source: what is being read (named in the warning).
        root: folder that names in the warning are made relative to.
        verify: decode every image fully (finds truncated files); otherwise read headers only.

    Returns:
        keep: indices into ``paths`` of the usable images, in order.
        sizes: [len(keep), 2] (height, width) of those images.
        skipped: (path, reason) of the others.
    """
    if verify:
        _, skipped = check_images(paths)
    else:
        skipped = [(p, "file not found") for p in paths if not Path(p).is_file()]
    unusable = {p for p, _ in skipped}
    keep, sizes = [], []
    for i, path in enumerate(paths):
        if path in unusable:
            continue
        try:
            sizes.append(image_size(path))
        except (OSError, ValueError, SyntaxError) as err:
            skipped.append((path, f"not a readable image ({err})"))
            continue
        keep.append(i)
    if skipped:
        names = [f"{display(p, root)} ({reason})" for p, reason in skipped]
        warn(f"{source}: skipped {len(skipped)} unreadable image(s): {name_list(names)}")
    return keep, np.asarray(sizes, dtype=np.int64).reshape(-1, 2), skipped


def require_views(image_paths: Sequence[Path], source: str, hint: str = "") -> None:
    """``SceneError`` unless at least ``MIN_VIEWS`` usable images remain."""
    if len(image_paths) >= MIN_VIEWS:
        return
    if not image_paths:
        raise SceneError(f"no usable images in {source}. {hint}".strip())
    raise SceneError(
        f"{source} has only 1 usable image ({image_paths[0]}); FF3R needs at least {MIN_VIEWS} views of a "
        f"scene. {hint or 'Add more images of it (or fix the unreadable ones).'}"
    )
