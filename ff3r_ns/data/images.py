"""Image files: listing, natural order, cheap sizes, decoding to float RGB, and integrity checks.

Every reader and loader goes through these functions, so that all of them agree on what an image is:
``.jpg``/``.jpeg``/``.png``/``.webp``, EXIF orientation applied, transparency composited on white,
grayscale and 16-bit data turned into RGB in [0, 1].
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PathLike = Union[str, Path]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""File suffixes (lower case) that count as images."""

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def natural_sort_key(path: PathLike) -> list:
    """Sort key that orders digit runs by value: ``img2`` before ``img10``, case-insensitive."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def is_image_file(path: PathLike) -> bool:
    """True for a file whose suffix is one of ``IMAGE_EXTENSIONS`` (hidden files excluded)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: PathLike) -> list[Path]:
    """The image files directly inside ``folder``, in natural order (no recursion)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=natural_sort_key)


def image_size(path: PathLike) -> tuple[int, int]:
    """(height, width) of an image as displayed, i.e. after EXIF rotation; reads the header only."""
    with Image.open(path) as img:
        width, height = img.size
        if img.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED_ORIENTATIONS:
            width, height = height, width
    return height, width


def _to_rgb_float(img: Image.Image) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] from any PIL mode we meet in practice."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit PNGs load as I;16 or I (values 0..65535); F is taken to be in [0, 1] already.
        data = np.asarray(img, dtype=np.float32)
        scale = 1.0 if img.mode == "F" else 65535.0
        gray = np.clip(data / scale, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + (1.0 - alpha)  # composite on white
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: PathLike) -> np.ndarray:
    """Decode an image file to a float32 [H, W, 3] array in [0, 1].

    EXIF orientation is applied, transparency is composited on white, grayscale is repeated to three
    channels and 16-bit data is divided by 65535. Truncated or corrupt files raise ``OSError``.
    """
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return np.ascontiguousarray(_to_rgb_float(img))


def check_images(paths: Iterable[PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Fully decode each image and sort the files into usable and broken ones.

    Returns:
        ok: the paths that decoded, in the given order.
        bad: (path, reason) for each file that is missing, not an image, or truncated/corrupt.
    """
    ok: list[Path] = []
    bad: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        try:
            with Image.open(path) as img:
                img.load()  # a full decode: truncated data raises (LOAD_TRUNCATED_IMAGES stays False)
            ok.append(path)
        except FileNotFoundError:
            bad.append((path, "file not found"))
        except UnidentifiedImageError:
            bad.append((path, "not a readable image"))
        except (OSError, ValueError, SyntaxError) as err:  # PIL raises these for damaged data
            bad.append((path, f"corrupt or truncated ({err})"))
    return ok, bad
