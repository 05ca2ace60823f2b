"""The paper's semantic classes: the one list every label source maps onto.

FF3R evaluates segmentation over 8 classes (Sec. 4.1): wall, floor, ceiling, chair, table, sofa, bed and
other. Label images store the class id ``i + 1`` for ``CLASS_NAMES[i]``; 0 means no label (ignored).
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("wall", "floor", "ceiling", "chair", "table", "sofa", "bed", "other")
"""Class names of ids 1..8 (0 = nothing)."""

WALL, FLOOR, CEILING, CHAIR, TABLE, SOFA, BED, OTHER = range(1, 9)
IGNORE = 0
"""Label id of pixels that carry no class (not counted by mIoU or accuracy)."""
