"""Depth and label maps stored in another camera than their image, or in another id space than the classes.

RGB-D datasets such as ScanNet record depth (and the labels drawn on it) with the depth sensor's camera
matrix ``K_m`` at its own resolution, registered to the colour camera: same centre, same axes, another
``K_i``. The colour pixel centred at ``(u + 0.5, v + 0.5)`` looks along the ray ``K_i^-1 [u + 0.5, v + 0.5, 1]``,
which meets the map at::

    [x_m, y_m, 1] ~ K_m K_i^-1 [u + 0.5, v + 0.5, 1]

and, the optical axis being shared, a z-depth read there is the colour pixel's z-depth unchanged.
``resample_to_image`` gives every colour pixel the value of the map pixel that contains ``(x_m, y_m)``
(nearest: no blending across depth edges, no invented class ids); pixels whose ray misses the map get 0
(unknown depth, ignored label). Both matrices use the pixel convention of ``ff3r_ns.data.sampling``
(pixel ``i`` covers ``[i, i + 1)``). A plain resize is the special case where ``K_m`` is ``K_i`` scaled by
the size ratio; it is wrong as soon as the two fields of view differ (ScanNet's depth sees less than colour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jaxtyping import Float, Int

from ff3r_ns.data.classes import OTHER
from ff3r_ns.data.read_common import name_list, warn

UNLISTED = -1
"""Entry of a ``LabelTable`` for a source id its table does not list."""


def resample_to_image(
    values: np.ndarray,
    map_intrinsics: Float[np.ndarray, "3 3"],
    image_intrinsics: Float[np.ndarray, "3 3"],
    image_hw: tuple[int, int],
) -> np.ndarray:
    """The map ``values`` ([h_m, w_m], any dtype) seen from the image's pixel grid ``image_hw`` (see above).

    Returns an ``[H, W]`` array of the same dtype, 0 where a pixel's ray falls outside the map.
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    homography = np.asarray(map_intrinsics, np.float64) @ np.linalg.inv(np.asarray(image_intrinsics, np.float64))
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ homography.T  # [H, W, 3]
    cols = np.floor(rays[..., 0] / rays[..., 2]).astype(np.int64)
    rows = np.floor(rays[..., 1] / rays[..., 2]).astype(np.int64)
    inside = (rows >= 0) & (rows < values.shape[0]) & (cols >= 0) & (cols < values.shape[1])
    out = np.zeros((height, width), dtype=values.dtype)
    out[inside] = values[rows[inside], cols[inside]]
    return out


@dataclass
class LabelTable:
    """Class ids (0..8) of a source's own label ids, e.g. ScanNet's raw categories through NYU40."""

    classes: Int[np.ndarray, " ids"]
    """``classes[i]`` is the class of source id ``i``; ``UNLISTED`` where the table has no row for ``i``."""
    source: Path
    """The file the table was read from (named in warnings)."""
    _reported: set[int] = field(default_factory=set, repr=False)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Class ids of the source ids ``raw`` (any shape); unlisted ids count as other, warned once per id."""
        raw = np.asarray(raw, dtype=np.int64)
        inside = (raw >= 0) & (raw < len(self.classes))
        classes = np.full(raw.shape, UNLISTED, dtype=np.int64)
        classes[inside] = self.classes[raw[inside]]
        unlisted = classes == UNLISTED
        if unlisted.any():
            new = sorted(set(np.unique(raw[unlisted]).tolist()) - self._reported)
            if new:
                self._reported.update(new)
                warn(f"{self.source}: label id(s) {name_list([str(i) for i in new])} are not in this table; "
                     "counted as 'other'")
            classes[unlisted] = OTHER
        return classes
