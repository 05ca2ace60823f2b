"""The optimizers and learning-rate schedule of ff3r-train (paper Appendix A), as nerfstudio adapters.

AdamW (AnySplat's betas and weight decay) on two parameter groups, new heads at the peak learning rate and
the pretrained backbone at a fraction of it, each with a linear warm-up then cosine decay
(:mod:`ff3r_ns.training.schedule`), and the gradient clipped to one global norm before any group steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
from nerfstudio.engine.optimizers import OptimizerConfig, Optimizers
from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.nn import Parameter

from ff3r_ns.training.schedule import warmup_cosine


@dataclass
class AdamWOptimizerConfig(OptimizerConfig):
    """AdamW as AnySplat trains: betas (0.9, 0.95), weight decay 0.05 (on every parameter)."""

    _target: Type = torch.optim.AdamW
    betas: Tuple[float, float] = (0.9, 0.95)
    """Adam's moment decay rates."""
    weight_decay: float = 0.05
    """Decoupled weight decay."""
    fused: Optional[bool] = True
    """One fused kernel per step (torch's ``fused=True``, CPU and CUDA): the default multi-tensor path allocates
    temporaries the size of the parameters, gigabytes at the large preset. None: torch's choice."""


@dataclass
class WarmupCosineSchedulerConfig(SchedulerConfig):
    """Linear warm-up to the optimizer's learning rate, then cosine decay (:mod:`ff3r_ns.training.schedule`)."""

    _target: Type = field(default_factory=lambda: WarmupCosineScheduler)
    warmup_steps: int = 1_000
    """Steps of linear warm-up (the paper's 1k)."""
    max_steps: int = 30_000
    """Step at which the cosine ends; set it to the run's total number of iterations."""
    final_ratio: float = 0.0
    """Learning rate at the end, as a fraction of the peak."""


class WarmupCosineScheduler(Scheduler):
    config: WarmupCosineSchedulerConfig

    def get_scheduler(self, optimizer: torch.optim.Optimizer, lr_init: float) -> torch.optim.lr_scheduler.LRScheduler:
        c = self.config
        return warmup_cosine(optimizer, c.warmup_steps, c.max_steps, c.final_ratio)


class GlobalClipOptimizers(Optimizers):
    """nerfstudio's optimizers (one per parameter group) with the gradient clipped to one global norm.

    nerfstudio's own ``max_norm`` clips each group separately; the paper (and AnySplat) clip the norm of the
    whole gradient, which this does before any group steps.
    """

    def __init__(self, config: Dict[str, Any], param_groups: Dict[str, List[Parameter]], max_norm: Optional[float]):
        for name, group in config.items():
            if group["optimizer"].max_norm is not None:
                raise ValueError(f"optimizer '{name}' sets max_norm; ff3r-train clips globally (--gradient-clip)")
        super().__init__(config, param_groups)
        self.max_norm = max_norm
        self.last_grad_norm = 0.0

    def optimizer_scaler_step_some(self, grad_scaler, param_groups: List[str]) -> None:
        if self.max_norm is not None:
            for group in param_groups:
                grad_scaler.unscale_(self.optimizers[group])
            params = [p for group in param_groups for p in self.parameters[group]]
            self.last_grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_norm))
        super().optimizer_scaler_step_some(grad_scaler, param_groups)

    def optimizer_scaler_step_all(self, grad_scaler) -> None:
        self.optimizer_scaler_step_some(grad_scaler, list(self.optimizers))


def default_optimizers(max_steps: int = 30_000, warmup_steps: int = 1_000, lr: float = 2e-4, backbone_scale: float = 0.1):
    """The two parameter groups of ``FF3RTrainModel.get_param_groups``: new heads at ``lr``, the pretrained
    backbone at ``backbone_scale * lr``."""

    def group(peak: float) -> Dict[str, Any]:
        return {
            "optimizer": AdamWOptimizerConfig(lr=peak),
            "scheduler": WarmupCosineSchedulerConfig(warmup_steps=warmup_steps, max_steps=max_steps),
        }

    return {"heads": group(lr), "backbone": group(lr * backbone_scale)}
