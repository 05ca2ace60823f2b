"""``ns-train ff3r-train``: annotation-free training of the FF3R network (paper Sec. 3.2-3.3, Appendix A).

Each step (one per nerfstudio iteration):

1. the datamanager (:mod:`ff3r_ns.ns.multiview_datamanager`) draws ``scenes_per_batch`` scenes and, in each, a
   context set with the paper's sequential sampling (:func:`ff3r_ns.data.sampling.sample_training_views`), loaded
   by :func:`ff3r_ns.data.views.load_views`;
2. the geometry teacher gives pose encodings and depth in the normalized frame, the semantic teacher 2D features
   (:mod:`ff3r_ns.training.teachers`);
3. the network predicts cameras, depth and (voxelized) Gaussians; every context view is rendered from the
   Gaussians with the *predicted* cameras, and the rendered low-dimensional semantic map is lifted to 512-d;
4. ``L_total = L_rgb + 0.1 L_feat + 0.1 L_warp + 1.0 L_d + 10.0 L_p`` (Eq. 13, :mod:`ff3r_ns.training.losses`),
   AdamW on two parameter groups (new heads at the peak learning rate, the pretrained backbone at 0.1x), warm-up
   then cosine, the gradient clipped to a global norm of 0.5 (:mod:`ff3r_ns.ns.optimization`), bf16 autocast on
   the GPU.

Where the paper leaves a choice open:

- ``L_d`` (Eq. 12) is taken on the depth head's output and on the rendered depth, averaged (AnySplat distills
  both); ``depth_loss_on`` picks one.
- ``L_warp`` (Eq. 2-4) compares the lifted rendered features (or the low-dimensional ones, ``warp_features``)
  at the resolution of the semantic teacher, warped with the predicted depth and cameras *detached*: geometry
  guides semantics (G->S), the feature loss does not bend the geometry.
- The rendered semantic map is average-pooled to the teacher's resolution before lifting; lifting is a 1x1
  convolution, so this equals lifting then pooling, at a quarter of the cost.

Multi-GPU: ``--machine.num-devices N`` runs N processes (nerfstudio's launcher, NCCL); the pipeline calls the
DDP-wrapped model (``self._model``), each rank draws its own scenes (the sampler is seeded by rank), and the
effective batch is ``N * scenes_per_batch`` scenes.

Checkpoints resume exactly: nerfstudio saves the pipeline (network weights + the sampler's RNG state, kept as
the datamanager's extra state), the optimizers, the schedulers and the step. At the end of a run the network is
also written as an FF3R checkpoint (``<run>/ff3r/``, fp16); ``python -m ff3r_ns.ns.train export RUN OUT`` does the
same for any saved step.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Type, Union

import torch
import yaml
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification
from nerfstudio.utils.rich_utils import CONSOLE

from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import (
    LSEG_DOWNLOAD_HINT,
    VGGT_FILES,
    VGGT_HUB_ID,
    WeightsUnavailable,
    resolve_file,
    save_ff3r_checkpoint,
    strict_load,
)
from ff3r_ns.ns.errors import requested_bytes, user_errors, views_that_fit
from ff3r_ns.ns.multiview_datamanager import FF3RTrainDataManager, FF3RTrainDataManagerConfig
from ff3r_ns.ns.optimization import GlobalClipOptimizers, default_optimizers
from ff3r_ns.ns.train_model import FF3RTrainModelConfig, training_step
from ff3r_ns.training.losses import lpips_backbone_file
from ff3r_ns.training.teachers import (
    DatasetGeometryTeacher,
    GeometryTeacher,
    GeometryTeacherKind,
    SemanticTeacherKind,
    VGGTTeacher,
)

LOSS_LOG = "losses.jsonl"
"""File in the run folder that gets one JSON line per step: step, wall time, unweighted loss terms, metrics."""
EXPORT_DIR = "ff3r"
"""Folder in the run folder that the final network is exported to as an FF3R checkpoint."""


# ----------------------------------------------------------------------------------------------------
# Trainer


@dataclass
class FF3RTrainerConfig(TrainerConfig):
    """nerfstudio's trainer with FF3R's global gradient clipping."""

    _target: Type = field(default_factory=lambda: FF3RTrainer)
    gradient_clip: Optional[float] = 0.5
    """Largest global gradient norm (the paper's 0.5); None: no clipping."""


class FF3RTrainer(Trainer):
    config: FF3RTrainerConfig

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        with user_errors("ns-train ff3r-train", self.base_dir):
            super().setup(test_mode)

    def setup_optimizers(self) -> Optimizers:
        return GlobalClipOptimizers(self.config.optimizers.copy(), self.pipeline.get_param_groups(), self.config.gradient_clip)

    def train_iteration(self, step: int):
        """nerfstudio's iteration; running out of GPU memory ends the run with what would fit instead of a traceback."""
        device = torch.device(self.device)
        if device.type != "cuda":
            return super().train_iteration(step)
        torch.cuda.reset_peak_memory_stats(device)
        static = torch.cuda.memory_allocated(device)  # weights, gradients, optimizer state
        try:
            return super().train_iteration(step)
        except torch.cuda.OutOfMemoryError as error:
            peak = torch.cuda.max_memory_allocated(device) + requested_bytes(str(error))
            views = self.pipeline.datamanager.last_views
            model = self.pipeline.model
            CONSOLE.print(
                "[bold red]ns-train ff3r-train: "
                + out_of_memory_advice(views, static, peak, torch.cuda.get_device_properties(device).total_memory, model.checkpointing),
                soft_wrap=True,
            )
            raise SystemExit(2) from None


def out_of_memory_advice(views: int, static: int, peak: int, capacity: int, checkpointing: bool) -> str:
    """What to tell a user whose step of ``views`` context views ran out of ``capacity`` bytes of GPU memory.

    Memory grows about linearly with the views on top of the ``static`` weights and optimizer state (docs/
    BENCHMARKS.md), and ``peak`` (what was held plus the failed request) is a lower bound of what the step needs,
    so ``views * (capacity - static) / (peak - static)`` is an upper bound of the views that fit.
    """
    gib = 2**30
    lines = [
        f"out of GPU memory on a step of {views} views: it needed more than {peak / gib:.1f} GiB of the card's "
        f"{capacity / gib:.1f} GiB ({static / gib:.1f} GiB of them weights, gradients and optimizer state)."
    ]
    fit = views_that_fit(views, static, peak, capacity)
    if fit is not None:
        if fit >= 2:
            lines.append(f"At most {fit} views would fit: --pipeline.datamanager.sampling.max-views {fit}.")
        else:
            lines.append("Not even 2 views fit: use a smaller preset or image size (--pipeline.datamanager.sampling.image-size).")
    if not checkpointing:
        lines.append(
            "Activation checkpointing is off; --pipeline.model.activation-checkpointing True cuts the memory several-fold "
            "(docs/BENCHMARKS.md)."
        )
    return " ".join(lines)


# ----------------------------------------------------------------------------------------------------
# Pipeline


@dataclass
class FF3RTrainPipelineConfig(VanillaPipelineConfig):
    """Datamanager, network and teachers of ff3r-train."""

    _target: Type = field(default_factory=lambda: FF3RTrainPipeline)
    datamanager: FF3RTrainDataManagerConfig = field(default_factory=FF3RTrainDataManagerConfig)
    model: FF3RTrainModelConfig = field(default_factory=FF3RTrainModelConfig)
    geometry_teacher: GeometryTeacherKind = "vggt"
    """Targets of L_p and L_d: 'vggt' (a frozen VGGT-1B, the paper's: no poses or depth needed) or 'dataset' (the
    scenes' own poses and depth: a supervised variant)."""
    vggt_teacher_weights: str = VGGT_HUB_ID
    """VGGT-1B weights of the 'vggt' teacher: a file, a folder or a hub id."""
    semantic_teacher: SemanticTeacherKind = "lseg"
    """Target of L_feat: 'lseg' (the frozen LSeg encoder, the paper's: needs --pipeline.model.lseg-weights) or
    'dataset' (2D features stored with the scenes, e.g. the synthetic rooms' stand-in teacher)."""
    export_at_end: bool = True
    """Write the final network as an FF3R checkpoint (fp16) to <run>/ff3r/."""


def check_weights(config: FF3RTrainPipelineConfig) -> None:
    """Raises ``WeightsUnavailable`` naming every weight file of the teachers and of LPIPS that can't be had, where
    to get it, and the flags that do without it."""
    teachers = []
    if config.geometry_teacher == "vggt" and not _available(config.vggt_teacher_weights, VGGT_FILES):
        teachers.append(
            f"the 'vggt' geometry teacher needs VGGT-1B's {' or '.join(VGGT_FILES)} (huggingface.co/{VGGT_HUB_ID}): "
            f"'{config.vggt_teacher_weights}' is neither a local file or folder holding one nor reachable on the hub; "
            "pass it with --pipeline.vggt-teacher-weights PATH"
        )
    lseg = config.model.lseg_weights
    if config.semantic_teacher == "lseg" and (lseg is None or not _available(lseg, ("demo_e200.ckpt",))):
        given = "none was given" if lseg is None else f"'{lseg}' does not exist"
        teachers.append(
            f"the 'lseg' semantic teacher needs LSeg's demo_e200.ckpt ({given}): {LSEG_DOWNLOAD_HINT} with "
            "--pipeline.model.lseg-weights PATH"
        )
    problems = []
    if teachers:
        problems.append(
            "the annotation-free training of the paper distills frozen teachers whose weights are missing: "
            + "; ".join(teachers)
            + ". Or train on the scenes' own poses, depth and stored features: --pipeline.geometry-teacher dataset "
            "--pipeline.semantic-teacher dataset."
        )
    if config.model.loss.lpips > 0:
        try:
            lpips_backbone_file(config.model.lpips_weights, config.model.lpips_net)
        except WeightsUnavailable as error:
            problems.append(str(error))
    if problems:
        raise WeightsUnavailable(" ".join(problems))


def _available(source: str, filenames: tuple[str, ...]) -> bool:
    """Whether ``resolve_file`` finds the file (on disk, or on the hub when online)."""
    try:
        resolve_file(source, filenames, "weights", "")
    except WeightsUnavailable:
        return False
    return True


class FF3RTrainPipeline(VanillaPipeline):
    """One training step: sample, teach, predict and render (through the DDP wrapper), score."""

    config: FF3RTrainPipelineConfig
    datamanager: FF3RTrainDataManager

    def __init__(
        self,
        config: FF3RTrainPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler=None,
    ):
        check_weights(config)  # before any scene is read: a missing file ends the run at once
        if torch.device(device).type == "cuda":
            torch.cuda.set_device(torch.device(device))  # each DDP rank renders (gsplat) on its own GPU
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        if config.geometry_teacher == "vggt":
            teacher: GeometryTeacher = VGGTTeacher.from_weights(config.vggt_teacher_weights).to(device)
        else:
            teacher = DatasetGeometryTeacher()
        self._teacher = (teacher,)  # a tuple: kept out of the state dict and of DDP
        self.last_log: Dict[str, float] = {}

    @property
    def geometry_teacher(self) -> GeometryTeacher:
        return self._teacher[0]

    def get_train_loss_dict(self, step: int):
        start = time.perf_counter()
        views = self.datamanager.next_train(step)
        waited = time.perf_counter() - start
        # self._model: the DDP wrapper when world_size > 1
        outputs, loss_dict, metrics = training_step(self.model, self.geometry_teacher, self.config.semantic_teacher, views, self._model)
        metrics["data_seconds"] = waited  # time spent waiting for the sample: > 0 means data-bound
        if views.images.is_cuda:
            metrics["gpu_memory_gb"] = torch.cuda.max_memory_allocated(views.images.device) / 2**30
        self.last_log = {key: float(value) for key, value in metrics.items()}
        return outputs, loss_dict, metrics

    def export_network(self, out_dir: Union[str, Path], dtype: Optional[torch.dtype] = torch.float16) -> Path:
        """Write the network as an FF3R checkpoint (model.safetensors + config.json)."""
        return save_ff3r_checkpoint(self.model.network, out_dir, dtype)

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(attributes)
        trainer = attributes.trainer
        if trainer is None or getattr(trainer, "local_rank", 0) != 0:
            return callbacks
        base_dir = Path(trainer.base_dir)

        def log_losses(step: int) -> None:
            record = {"step": step, "time": time.time(), **self.last_log}
            for name, scheduler in attributes.optimizers.schedulers.items():
                record[f"next_lr_{name}"] = scheduler.get_last_lr()[0]  # the schedulers have stepped already
            if isinstance(attributes.optimizers, GlobalClipOptimizers):
                record["grad_norm"] = attributes.optimizers.last_grad_norm
            base_dir.mkdir(parents=True, exist_ok=True)
            with open(base_dir / LOSS_LOG, "a") as f:
                f.write(json.dumps(record) + "\n")

        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], log_losses))
        if self.config.export_at_end:
            callbacks.append(
                TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], lambda step: self.export_network(base_dir / EXPORT_DIR))
            )
        return callbacks


# ----------------------------------------------------------------------------------------------------
# Method and export


ff3r_train_method = MethodSpecification(
    config=FF3RTrainerConfig(
        method_name="ff3r-train",
        max_num_iterations=30_000,
        steps_per_save=1_000,
        save_only_latest_checkpoint=False,
        mixed_precision=False,  # bf16 autocast is the model's own (nerfstudio's is fp16 with a scaler)
        pipeline=FF3RTrainPipelineConfig(),
        optimizers=default_optimizers(),
        vis="tensorboard",
    ),
    description="FF3R: annotation-free training of the network on one or many scenes (paper Sec. 3.2-3.3)",
)


def latest_checkpoint(run_dir: Union[str, Path]) -> Path:
    """The newest ``step-*.ckpt`` of a run folder (the one holding config.yml)."""
    checkpoints = sorted((Path(run_dir) / "nerfstudio_models").glob("step-*.ckpt"))
    if not checkpoints:
        raise FileNotFoundError(f"no nerfstudio_models/step-*.ckpt in {run_dir}; pass the folder that holds config.yml")
    return checkpoints[-1]


def network_from_run(run_dir: Union[str, Path], checkpoint: Optional[Path] = None) -> FF3R:
    """The network of a training run, as saved in its checkpoint (default: the newest)."""
    run_dir = Path(run_dir)
    config = yaml.load((run_dir / "config.yml").read_text(), Loader=yaml.Loader)
    network = FF3R(config.pipeline.model.network_config())
    state = torch.load(checkpoint or latest_checkpoint(run_dir), map_location="cpu", weights_only=True)["pipeline"]
    prefixes = ("_model.module.network.", "_model.network.")  # with and without DDP
    weights = {key.split("network.", 1)[1]: value for key, value in state.items() if key.startswith(prefixes)}
    strict_load(network, weights, f"training checkpoint of {run_dir}")
    return network


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ff3r_ns.ns.train", description="Tools for ff3r-train runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a run's network as an FF3R checkpoint (fp16 by default)")
    export.add_argument("run", type=Path, help="the run folder (holding config.yml and nerfstudio_models/)")
    export.add_argument("out", type=Path, help="output folder for model.safetensors and config.json")
    export.add_argument("--checkpoint", type=Path, default=None, help="a step-*.ckpt (default: the newest)")
    export.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args(argv)
    network = network_from_run(args.run, args.checkpoint)
    path = save_ff3r_checkpoint(network, args.out, None if args.fp32 else torch.float16)
    print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------------------------------
# Runs saved before the split

_MOVED = {
    "AdamWOptimizerConfig": "ff3r_ns.ns.optimization",
    "WarmupCosineSchedulerConfig": "ff3r_ns.ns.optimization",
    "WarmupCosineScheduler": "ff3r_ns.ns.optimization",
    "FF3RTrainDataManagerConfig": "ff3r_ns.ns.multiview_datamanager",
    "FF3RTrainDataManager": "ff3r_ns.ns.multiview_datamanager",
    "FF3RTrainModel": "ff3r_ns.ns.train_model",
    "BACKBONE_MODULES": "ff3r_ns.ns.train_model",
}
"""Classes that lived in this module once: the config.yml of a run saved then names them ``ff3r_ns.ns.train.<name>``."""


def __getattr__(name: str) -> Any:
    """The old paths of the moved classes (PEP 562), so that ``yaml.load`` of an older config.yml finds them."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
