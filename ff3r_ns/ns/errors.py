"""How the ns-train methods end on a user's mistake: the message alone, exit code 2, no stray run folder."""

from __future__ import annotations

import math
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from nerfstudio.utils.rich_utils import CONSOLE

from ff3r_ns.data.read_common import SceneError
from ff3r_ns.network.weights import WeightsUnavailable


class InferenceOutOfMemory(RuntimeError):
    """The forward pass did not fit the GPU; the message says how many views would."""


USER_ERRORS = (SceneError, WeightsUnavailable, InferenceOutOfMemory)
"""Bad scenes, unavailable weights, a pass too large for the GPU: their messages say what to do, so a traceback adds nothing."""


@contextmanager
def user_errors(command: str, run_dir: Path) -> Iterator[None]:
    """Turns ``USER_ERRORS`` raised inside into a message and ``SystemExit(2)``.

    ns-train writes config.yml before the trainer reads the scene; a run folder holding nothing else is
    removed so that a failed start leaves nothing behind.
    """
    try:
        yield
    except USER_ERRORS as error:
        CONSOLE.print(f"[bold red]{command}: {error}", soft_wrap=True)
        if run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == ["config.yml"]:
            shutil.rmtree(run_dir)
        raise SystemExit(2) from None


def requested_bytes(message: str) -> int:
    """The allocation that failed, as torch's out-of-memory message states it ("Tried to allocate 2.5 GiB"); 0 if absent."""
    found = re.search(r"Tried to allocate ([0-9.]+) (B|KiB|MiB|GiB|TiB)", message)
    if found is None:
        return 0
    return int(float(found.group(1)) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(found.group(2)))


def views_that_fit(views: int, static: int, peak: int, capacity: int) -> Optional[int]:
    """Views that fit in ``capacity`` bytes when ``views`` needed ``peak`` on top of ``static`` (None: unknown).

    GPU memory grows about linearly with the views on top of the static weights (docs/BENCHMARKS.md).
    """
    if views <= 0 or peak <= static:
        return None
    return math.floor(views * (capacity - static) / (peak - static))


def inference_memory_advice(views: int, static: int, peak: int, capacity: int) -> str:
    """What to tell a user whose pass over ``views`` views ran out of ``capacity`` bytes (``peak``: held + requested)."""
    gib = 2**30
    text = (
        f"out of GPU memory in the forward pass over {views} views: it needed more than {peak / gib:.1f} GiB of the "
        f"card's {capacity / gib:.1f} GiB ({static / gib:.1f} GiB of them weights)."
    )
    fit = views_that_fit(views, static, peak, capacity)
    if fit is None or fit < 2:
        return text + " Use a smaller image size (--pipeline.image-long-side) or the small preset's weights."
    # ``peak`` is a lower bound of the need, so ``fit`` is an upper bound; 90 % of it leaves room for what
    # the failed allocation was not yet asking for.
    fit = max(2, min(views - 1, int(0.9 * fit)))
    return text + f" About {fit} views fit: --pipeline.max-views {fit} (or a smaller --pipeline.image-long-side)."
