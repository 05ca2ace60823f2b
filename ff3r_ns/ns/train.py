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
import copy
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Type, Union

import torch
import torch.nn.functional as F
import yaml
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification
from torch import Tensor, nn
from torch.nn import Parameter

from ff3r_ns.eval.metrics import psnr
from ff3r_ns.network.config import FF3RConfig, preset
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.render import Backend, render_gaussians
from ff3r_ns.network.weights import (
    VGGT_HUB_ID,
    load_ff3r_checkpoint,
    load_lseg_weights,
    load_vggt_weights,
    save_ff3r_checkpoint,
    strict_load,
)
from ff3r_ns.ns.errors import user_errors
from ff3r_ns.ns.multiview_datamanager import FF3RTrainDataManager, FF3RTrainDataManagerConfig
from ff3r_ns.ns.optimization import GlobalClipOptimizers, default_optimizers
from ff3r_ns.training.losses import (
    LossWeights,
    depth_distillation_loss,
    feature_loss,
    make_lpips,
    pose_distillation_loss,
    rgb_loss,
    total_loss,
)
from ff3r_ns.training.teachers import (
    DatasetGeometryTeacher,
    GeometryTargets,
    GeometryTeacher,
    GeometryTeacherKind,
    SemanticTeacherKind,
    TrainBatch,
    VGGTTeacher,
    semantic_targets,
)
from ff3r_ns.training.warp import feature_warping_loss, view_pairs

BACKBONE_MODULES = ("aggregator", "camera_head", "depth_head")
"""The network's pretrained parts (VGGT's); everything else trainable is a new head."""
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


# ----------------------------------------------------------------------------------------------------
# Model


@dataclass
class _Unregistered:
    """Modules the model uses but neither trains nor saves (kept out of its state dict and of DDP)."""

    lpips: Optional[nn.Module] = None


@dataclass
class FF3RTrainModelConfig(ModelConfig):
    """The FF3R network under training, its ablation switches (paper Table 3) and its losses."""

    _target: Type = field(default_factory=lambda: FF3RTrainModel)
    enable_collider: bool = False
    preset: Literal["tiny", "small", "large"] = "small"
    """Network size (ff3r_ns.network.config): tiny for tests, small for one GPU, large for the paper's."""
    init_checkpoint: Optional[Path] = None
    """Start from this FF3R checkpoint (folder with model.safetensors + config.json) instead of the preset."""
    vggt_weights: Optional[str] = None
    """Initialize the backbone (aggregator, camera and depth heads) from VGGT-1B: a file, a folder or a hub id
    (facebook/VGGT-1B; needs the large preset). None: random initialization."""
    lseg_weights: Optional[str] = None
    """LSeg's demo_e200.ckpt for the semantic encoder (then frozen, as in the paper)."""
    fusion: bool = True
    """Token-wise fusion (Eq. 1); off is Table 3's "Base"."""
    voxelize: bool = True
    """Train through semantic-aware voxelization (Eq. 5-8); off renders the pixel-aligned Gaussians."""
    voxel_lambda: Optional[float] = None
    """lambda of Eq. 7 (None: the preset's 1.0); 0 turns off S->G semantic-aware voxelization (confidence only)."""
    train_semantic_encoder: Optional[bool] = None
    """Train the semantic encoder; None: only when no LSeg weights are loaded (with them it stays frozen)."""
    freeze_patch_embed: bool = False
    """Freeze the DINOv2 patch embedding of the backbone."""
    loss: LossWeights = field(default_factory=LossWeights)
    """Weights of Eq. 13; warp 0 turns off G->S feature warping (Table 3), lpips 0 trains without LPIPS."""
    lpips_weights: Optional[Path] = None
    """LPIPS backbone (torchvision vgg16-397923af.pth / alexnet); None: torch's cache. Unused if lpips weight is 0."""
    lpips_net: Literal["vgg", "alex"] = "vgg"
    """LPIPS backbone kind."""
    depth_loss_on: Literal["head", "rendered", "both"] = "both"
    """Depth that L_d compares to the teacher's: the depth head's, the rendered one, or the mean of both losses."""
    warp_features: Literal["lifted", "low"] = "lifted"
    """Features L_warp compares: the 512-d lifted ones or the rendered low-dimensional ones."""
    warp_pairs: Optional[int] = None
    """View pairs per scene for L_warp (None: all pairs up to 4 views, else one per view; see training/warp.py)."""
    bf16: bool = True
    """bf16 autocast for the network on CUDA (rendering and losses stay in float32)."""
    render_backend: Backend = "auto"
    """Rasterizer: gsplat on CUDA, the PyTorch one elsewhere."""

    def network_config(self) -> FF3RConfig:
        """The network's configuration: the preset's (or the initial checkpoint's) with the switches applied."""
        if self.init_checkpoint is not None:
            config = copy.deepcopy(load_ff3r_checkpoint(self.init_checkpoint).config)
        else:
            config = preset(self.preset)
        config.fusion.enabled = self.fusion
        config.voxel.enabled = self.voxelize
        if self.voxel_lambda is not None:
            config.voxel.lam = self.voxel_lambda
        return config


class FF3RTrainModel(Model):
    """Holds the network (``self.network``: the pipeline's saved state is its state dict under
    ``_model.network.``) and computes the training losses."""

    config: FF3RTrainModelConfig

    def populate_modules(self) -> None:
        c = self.config
        self.network = FF3R(c.network_config())
        if c.init_checkpoint is not None:
            strict_load(self.network, load_ff3r_checkpoint(c.init_checkpoint).state_dict(), f"FF3R checkpoint {c.init_checkpoint}")
        if c.vggt_weights is not None:
            load_vggt_weights(self.network, c.vggt_weights)
        if c.lseg_weights is not None:
            load_lseg_weights(self.network, c.lseg_weights)
        train_semantic = c.lseg_weights is None if c.train_semantic_encoder is None else c.train_semantic_encoder
        self.semantic_frozen = not train_semantic
        self.network.semantic_encoder.requires_grad_(train_semantic)
        if c.freeze_patch_embed:
            self.network.aggregator.patch_embed.requires_grad_(False)
        self._unregistered = _Unregistered(lpips=make_lpips(c.lpips_weights, c.lpips_net) if c.loss.lpips > 0 else None)

    def train(self, mode: bool = True) -> "FF3RTrainModel":
        super().train(mode)
        if self.semantic_frozen:
            self.network.semantic_encoder.eval()  # a frozen LSeg keeps its BatchNorm statistics
        return self

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """``backbone``: the pretrained parts (aggregator, camera and depth heads); ``heads``: the rest."""
        groups: Dict[str, List[Parameter]] = {"heads": [], "backbone": []}
        for name, param in self.network.named_parameters():
            if param.requires_grad:
                groups["backbone" if name.split(".")[0] in BACKBONE_MODULES else "heads"].append(param)
        return groups

    def forward(self, batch: TrainBatch) -> Dict[str, Any]:  # type: ignore[override]
        return self.get_outputs(batch)

    def get_outputs(self, batch: TrainBatch) -> Dict[str, Any]:  # type: ignore[override]
        """Predict, render every context view with the predicted cameras, and lift the rendered semantics.

        Everything a loss reads comes out of here, so that DDP sees every parameter's use in the forward pass.
        """
        images = batch.images
        b, s, _, h, w = images.shape
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.config.bf16 and images.is_cuda):
            out = self.network(images)
        colours, depths, semantics = [], [], []
        for i in range(b):
            g = out.gaussians.scene(i)
            rendered = render_gaussians(
                g.means, g.quats, g.scales, g.opacities, g.sh, g.semantic,
                out.extrinsics[i], out.intrinsics[i], w, h, g.sh_degree, backend=self.config.render_backend,
            )  # fmt: skip
            colours.append(rendered["rgb"].permute(0, 3, 1, 2))
            depths.append(rendered["depth"][..., 0])
            semantics.append(rendered["features"].permute(0, 3, 1, 2))
        semantic = torch.stack(semantics)  # [b, s, f, h, w]
        # Pool to the grid of the stored teacher features if any, else of the semantic encoder (LSeg's half
        # resolution), then lift: the 1x1 lift commutes with average pooling.
        grid = tuple((out.semantic_2d if batch.features is None else batch.features).shape[-2:])
        pooled = F.adaptive_avg_pool2d(semantic.flatten(0, 1), grid)
        lifted = self.network.gaussian_head.lift_semantic(pooled.float())
        return {
            "rgb": torch.stack(colours),
            "rendered_depth": torch.stack(depths),
            "semantic_low": pooled.reshape(b, s, *pooled.shape[1:]),
            "semantic_lifted": lifted.reshape(b, s, *lifted.shape[1:]),
            "depth": out.depth,
            "pose_enc_list": [p.float() for p in out.pose_enc_list],
            "extrinsics": out.extrinsics,
            "intrinsics": out.intrinsics,
            "semantic_2d": out.semantic_2d,
            "num_gaussians": len(out.gaussians),
        }

    def get_metrics_dict(self, outputs: Dict[str, Any], batch: Dict[str, Any]) -> Dict[str, Any]:
        views: TrainBatch = batch["views"]
        return {
            "psnr": float(psnr(outputs["rgb"].detach().clamp(0, 1), views.images).mean()),
            "gaussians": float(outputs["num_gaussians"]),
            "views": float(views.images.shape[1]),
        }

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Any], metrics_dict=None) -> Dict[str, Tensor]:
        """``{"total": L_total}`` (Eq. 13); the unweighted terms go to ``metrics_dict`` as ``loss_<term>``.

        ``batch`` holds the :class:`TrainBatch` (``"views"``), the :class:`GeometryTargets` (``"geometry"``)
        and the semantic teacher's features (``"semantic"``). Terms of weight 0 are not computed.
        """
        views: TrainBatch = batch["views"]
        geometry: GeometryTargets = batch["geometry"]
        weights = self.config.loss
        terms: Dict[str, Tensor] = {}
        if weights.rgb > 0:
            lpips_fn = self._unregistered.lpips
            if lpips_fn is not None:
                self._unregistered.lpips = lpips_fn = lpips_fn.to(views.images.device)
            terms["rgb"] = rgb_loss(outputs["rgb"], views.images, lpips_fn, weights.lpips)
        if weights.feat > 0:
            terms["feat"] = feature_loss(outputs["semantic_lifted"], batch["semantic"])
        if weights.warp > 0:
            terms["warp"] = self._warp_loss(outputs, views.seeds)
        if weights.depth > 0 and geometry.depth is not None:
            terms["depth"] = self._depth_loss(outputs, geometry)
        if weights.pose > 0:
            terms["pose"] = pose_distillation_loss(outputs["pose_enc_list"], geometry.pose_enc)
        total, log = total_loss(terms, weights)
        if metrics_dict is not None:
            metrics_dict.update({f"loss_{name}": value for name, value in log.items()})
        return {"total": total}

    def _depth_loss(self, outputs: Dict[str, Any], geometry: GeometryTargets) -> Tensor:
        """``L_d`` (Eq. 12) on the depth head's output, the rendered depth, or both (mean)."""
        sources = {"head": ["depth"], "rendered": ["rendered_depth"], "both": ["depth", "rendered_depth"]}
        losses = [
            depth_distillation_loss(outputs[key], geometry.depth, geometry.depth_conf, geometry.top_fraction)
            for key in sources[self.config.depth_loss_on]
        ]
        return sum(losses) / len(losses)

    def _warp_loss(self, outputs: Dict[str, Any], seeds: Tuple[int, ...]) -> Tensor:
        """``L_warp`` (Eq. 4) per scene, averaged; each scene's pairs drawn from its own seed, geometry detached
        (G->S), so that a scene scores the same pairs wherever it sits in the batch and on whichever rank."""
        features = outputs["semantic_lifted" if self.config.warp_features == "lifted" else "semantic_low"]
        depth = outputs["depth"].detach()
        extrinsics, intrinsics = outputs["extrinsics"].detach(), outputs["intrinsics"].detach()
        b = features.shape[0]
        seeds = seeds or (0,) * b
        if len(seeds) != b:
            raise ValueError(f"need one seed per scene: {b} scenes, {len(seeds)} seeds")
        losses = []
        for i in range(b):
            generator = torch.Generator().manual_seed(seeds[i])
            pairs = view_pairs(extrinsics[i : i + 1].cpu(), num_pairs=self.config.warp_pairs, generator=generator)[0]
            losses.append(
                feature_warping_loss(
                    features[i : i + 1], depth[i : i + 1], extrinsics[i : i + 1], intrinsics[i : i + 1],
                    pairs=[tuple(pair) for pair in pairs.tolist()],
                )  # fmt: skip
            )
        return torch.stack(losses).mean()

    def get_image_metrics_and_images(self, outputs, batch):
        raise NotImplementedError("ff3r-train has no evaluation images; use scripts/evaluate_synthetic.py")

    def get_outputs_for_camera(self, camera, obb_box=None):
        raise NotImplementedError(
            "a training run has no scene to view; export the network (python -m ff3r_ns.ns.train export RUN OUT) "
            "and reconstruct a scene with ns-train ff3r"
        )


# ----------------------------------------------------------------------------------------------------
# Pipeline


@dataclass
class FF3RTrainPipelineConfig(VanillaPipelineConfig):
    """Datamanager, network and teachers of ff3r-train."""

    _target: Type = field(default_factory=lambda: FF3RTrainPipeline)
    datamanager: FF3RTrainDataManagerConfig = field(default_factory=FF3RTrainDataManagerConfig)
    model: FF3RTrainModelConfig = field(default_factory=FF3RTrainModelConfig)
    geometry_teacher: GeometryTeacherKind = "dataset"
    """Targets of L_p and L_d: 'vggt' (a frozen VGGT-1B, the paper's) or 'dataset' (the scenes' poses and depth)."""
    vggt_teacher_weights: str = VGGT_HUB_ID
    """VGGT-1B weights of the 'vggt' teacher: a file, a folder or a hub id."""
    semantic_teacher: SemanticTeacherKind = "dataset"
    """Target of L_feat: 'lseg' (the frozen semantic encoder, needs lseg_weights) or 'dataset' (stored features)."""
    export_at_end: bool = True
    """Write the final network as an FF3R checkpoint (fp16) to <run>/ff3r/."""


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
        if config.semantic_teacher == "lseg" and config.model.lseg_weights is None:
            raise ValueError(
                "the 'lseg' semantic teacher is the network's frozen LSeg encoder: pass its weights "
                "(--pipeline.model.lseg-weights demo_e200.ckpt) or use --pipeline.semantic-teacher dataset"
            )
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
        with torch.autocast(views.images.device.type, dtype=torch.bfloat16, enabled=self.model.config.bf16 and views.images.is_cuda):
            geometry = self.geometry_teacher(views)
        outputs = self._model(views)  # the DDP wrapper when world_size > 1
        batch = {
            "views": views,
            "geometry": geometry,
            "semantic": semantic_targets(self.config.semantic_teacher, views, outputs["semantic_2d"]),
        }
        metrics = self.model.get_metrics_dict(outputs, batch)
        loss_dict = self.model.get_loss_dict(outputs, batch, metrics)
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
}
"""Classes that lived in this module once: the config.yml of a run saved then names them ``ff3r_ns.ns.train.<name>``."""


def __getattr__(name: str) -> Any:
    """The old paths of the moved classes (PEP 562), so that ``yaml.load`` of an older config.yml finds them."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
