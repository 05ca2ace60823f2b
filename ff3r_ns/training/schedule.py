"""The learning-rate schedule of FF3R's training (paper Appendix A): linear warm-up, then cosine decay.

Pure PyTorch; ``ff3r_ns.ns.optimization`` wraps it as a nerfstudio scheduler. The factor is a Python float
(nerfstudio's own ``CosineDecayScheduler`` returns numpy scalars, which end up in the checkpoint and
make ``torch.load(weights_only=True)``, torch's default since 2.6, refuse it), so a run resumes with
``ns-train ... --load-dir`` without ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer, lr_scheduler


def warmup_cosine_factor(step: int, warmup_steps: int, max_steps: int, final_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate during step ``step`` (0-based).

    ``(step + 1) / warmup_steps`` during the warm-up (so the first step already moves), then
    ``final_ratio + (1 - final_ratio) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 at the end of
    the warm-up to 1 at ``max_steps``, and ``final_ratio`` after that.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, max_steps: int, final_ratio: float = 0.0
) -> lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`warmup_cosine_factor`, stepped once per training step."""
    if warmup_steps < 1 or max_steps < warmup_steps:
        raise ValueError(f"need 1 <= warmup_steps <= max_steps, got warmup_steps={warmup_steps}, max_steps={max_steps}")
    if not 0.0 <= final_ratio <= 1.0:
        raise ValueError(f"final_ratio must be in [0, 1], got {final_ratio}")
    return lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, max_steps, final_ratio)
    )
