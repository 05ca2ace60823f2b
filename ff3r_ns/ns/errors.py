"""How the ns-train methods end on a user's mistake: the message alone, exit code 2, no stray run folder."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nerfstudio.utils.rich_utils import CONSOLE

from ff3r_ns.data.read_common import SceneError
from ff3r_ns.network.weights import WeightsUnavailable

USER_ERRORS = (SceneError, WeightsUnavailable)
"""Bad scenes and unavailable weights: their messages say what to do, so a traceback adds nothing."""


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
