"""The paper's semantic classes: the one list every label source maps onto.

FF3R evaluates segmentation over 8 classes (Sec. 4.1): wall, floor, ceiling, chair, table, sofa, bed and
other. Label images store the class id ``i + 1`` for ``CLASS_NAMES[i]``; 0 means no label (ignored).

Real datasets label in NYU40 ids (ScanNet through ``scannetv2-labels.combined.tsv``); ``NYU40_TO_CLASS``
is the one place where they become the 8 classes:

=========  ==================  =====================
class id   class               NYU40 id (nyu40class)
=========  ==================  =====================
1          wall                1 (wall)
2          floor               2 (floor)
3          ceiling             22 (ceiling)
4          chair               5 (chair)
5          table               7 (table)
6          sofa                6 (sofa)
7          bed                 4 (bed)
8          other               every other id 1..40
0          ignored             0 (unlabelled)
=========  ==================  =====================
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("wall", "floor", "ceiling", "chair", "table", "sofa", "bed", "other")
"""Class names of ids 1..8 (0 = nothing)."""

WALL, FLOOR, CEILING, CHAIR, TABLE, SOFA, BED, OTHER = range(1, 9)
IGNORE = 0
"""Label id of pixels that carry no class (not counted by mIoU or accuracy)."""

NYU40_TO_CLASS: dict[int, int] = {1: WALL, 2: FLOOR, 22: CEILING, 5: CHAIR, 7: TABLE, 6: SOFA, 4: BED}
"""NYU40 ids that name one of the 8 classes; 0 is ``IGNORE`` and any other id is ``OTHER``."""


def nyu40_to_class(nyu40: np.ndarray) -> np.ndarray:
    """The class id (0..8) of each NYU40 id in ``nyu40`` (any shape, integers)."""
    nyu40 = np.asarray(nyu40, dtype=np.int64)
    classes = np.full(nyu40.shape, OTHER, dtype=np.int64)
    for nyu, cls in NYU40_TO_CLASS.items():
        classes[nyu40 == nyu] = cls
    classes[nyu40 == 0] = IGNORE
    return classes
