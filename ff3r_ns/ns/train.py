"""``ns-train ff3r-train``: annotation-free training of the FF3R network (paper Sec. 3.2-3.3, Appendix A).

Each step (one per nerfstudio iteration):

1. the datamanager draws ``scenes_per_batch`` scenes and, in each, a context set with the paper's sequential
   sampling (:func:`ff3r_ns.data.sampling.sample_training_views`), loaded by :func:`ff3r_ns.data.views.load_views`;
2. the geometry teacher gives pose encodings and depth in the normalized frame, the semantic teacher 2D features
   (:mod:`ff3r_ns.training.teachers`);
3. the network predicts cameras, depth and (voxelized) Gaussians; every context view is rendered from the
   Gaussians with the *predicted* cameras, and the rendered low-dimensional semantic map is lifted to 512-d;
4. ``L_total = L_rgb + 0.1 L_feat + 0.1 L_warp + 1.0 L_d + 10.0 L_p`` (Eq. 13, :mod:`ff3r_ns.training.losses`),
   AdamW on two parameter groups (new heads at the peak learning rate, the pretrained backbone at 0.1x), warm-up
   then cosine, the gradient clipped to a global norm of 0.5, bf16 autocast on the GPU.

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
import json
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Deque, Dict, List, Literal, Optional, Tuple, Type, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.base_datamanager import DataManager, DataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import OptimizerConfig, Optimizers
from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification
from torch import Tensor, nn
from torch.nn import Parameter

from ff3r_ns.data.sampling import TrainViewSamplingConfig, sample_training_views
from ff3r_ns.data.scene import SceneData
from ff3r_ns.data.views import Views, load_views
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
from ff3r_ns.ns.dataparsers import FF3RMultiSceneDataParserConfig
from ff3r_ns.ns.errors import user_errors
from ff3r_ns.training.losses import (
    LossWeights,
    depth_distillation_loss,
    feature_loss,
    make_lpips,
    pose_distillation_loss,
    rgb_loss,
    total_loss,
)
from ff3r_ns.training.schedule import warmup_cosine
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
# Optimizer, schedule and trainer


@dataclass
class AdamWOptimizerConfig(OptimizerConfig):
    """AdamW as AnySplat trains: betas (0.9, 0.95), weight decay 0.05 (on every parameter)."""

    _target: Type = torch.optim.AdamW
    betas: Tuple[float, float] = (0.9, 0.95)
    """Adam's moment decay rates."""
    weight_decay: float = 0.05
    """Decoupled weight decay."""


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
# Datamanager


@dataclass
class FF3RTrainDataManagerConfig(DataManagerConfig):
    """Multi-view training samples from one scene or a folder of many."""

    _target: Type = field(default_factory=lambda: FF3RTrainDataManager)
    dataparser: AnnotatedDataParserUnion = field(default_factory=FF3RMultiSceneDataParserConfig)
    """Reads the scene(s); the default takes a folder of many scenes (or one scene)."""
    sampling: TrainViewSamplingConfig = field(default_factory=lambda: TrainViewSamplingConfig(image_size=224))
    """Context views per sample (paper Appendix A); image_size must suit the network (a multiple of 14)."""
    scenes_per_batch: int = 1
    """Scenes per step and GPU (the paper: 1); all get the same number of views."""
    seed: int = 0
    """Seed of the sampler; rank r of a multi-GPU run uses (seed, r), so ranks draw different scenes."""
    load_depth: bool = True
    """Load depth maps where the scenes have them (the 'dataset' geometry teacher needs them)."""
    load_features: bool = True
    """Load stored 2D teacher features where the scenes have them (the 'dataset' semantic teacher needs them)."""
    num_workers: int = 4
    """Threads loading upcoming samples while the GPU trains."""
    prefetch: int = 2
    """Samples loaded ahead of the one in use (0: load each when asked)."""
    cache_views: bool = False
    """Keep every loaded view in memory (features in fp16): for small sets such as synthetic rooms, whose
    stand-in teacher features take ~0.3 s a view to rebuild and cut."""
    feature_downsample: int = 1
    """Average-pool the stored teacher features (half the view size) by this factor once loaded: L_feat and
    L_warp then compare at that coarser grid, for a fraction of the memory and transfer."""


class FF3RTrainDataManager(DataManager):
    """Yields :class:`TrainBatch` es; the sampler's RNG state is this module's extra state (checkpointed).

    Samples are drawn in order in the main thread and loaded by worker threads; the checkpointed RNG state is
    the one after the last sample *handed out*, so a resumed run draws exactly what the uninterrupted one would.
    """

    config: FF3RTrainDataManagerConfig

    def __init__(
        self,
        config: FF3RTrainDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        self.config = config
        self.device = device
        self.test_mode = test_mode
        if config.scenes_per_batch < 1:
            raise ValueError(f"scenes_per_batch must be at least 1, got {config.scenes_per_batch}")
        if config.sampling.image_size % 14:
            raise ValueError(f"sampling.image_size must be a multiple of 14 (the patch size), got {config.sampling.image_size}")
        if config.data is not None:
            config.dataparser.data = Path(config.data)
        self.dataparser = config.dataparser.setup()
        self.train_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="train")
        metadata = self.train_dataparser_outputs.metadata
        if "scene" not in metadata:
            raise ValueError("ff3r-train needs one of the ff3r-* dataparsers (ff3r-multiscene, ff3r-nerfstudio, ...)")
        scenes: List[SceneData] = metadata.get("scenes") or [metadata["scene"]]
        self.scenes = [scene for scene in scenes if len(scene) >= 2]
        if not self.scenes:
            raise ValueError(f"no scene with at least 2 views under {config.dataparser.data}")
        self.train_dataset = InputDataset(self.train_dataparser_outputs)
        self.eval_dataset = None
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else local_rank
        self.rng = np.random.default_rng([config.seed, rank])
        self._handed_out_state: Dict[str, Any] = copy.deepcopy(self.rng.bit_generator.state)
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.num_workers), thread_name_prefix="ff3r-views")
        self._queue: Deque[Tuple[Future, Dict[str, Any]]] = deque()
        self._cache: Dict[Tuple[int, int], Views] = {}
        self._last_rays = 0
        super().__init__()

    def setup_train(self) -> None:
        """Nothing to set up: samples are drawn on demand."""

    def setup_eval(self) -> None:
        """ff3r-train has no evaluation split (evaluate held-out scenes with scripts/evaluate_synthetic.py)."""

    def draw(self) -> Tuple[List[Tuple[int, List[int]]], int]:
        """The next sample: (scene index, frame indices) per scene, and the seed of the step's other choices."""
        sampling = self.config.sampling
        if sampling.random_num_views:
            num_views = int(self.rng.integers(sampling.min_views, sampling.max_views + 1))
        else:
            num_views = sampling.max_views
        fixed = replace(sampling, max_views=num_views, random_num_views=False)
        count = self.config.scenes_per_batch
        chosen = self.rng.choice(len(self.scenes), size=count, replace=len(self.scenes) < count)
        picks = [(int(i), sample_training_views(len(self.scenes[i]), fixed, self.rng)) for i in chosen]
        shortest = min(len(frames) for _, frames in picks)  # short scenes give fewer views
        seed = int(self.rng.integers(2**31 - 1))
        return [(i, frames[:shortest]) for i, frames in picks], seed

    def _views(self, scene_index: int, frames: List[int]) -> Views:
        scene, c = self.scenes[scene_index], self.config
        size = c.sampling.image_size
        if not c.cache_views:
            return self._pool_features(load_views(scene, frames, size, depth=c.load_depth, features=c.load_features))
        for frame in frames:
            if (scene_index, frame) not in self._cache:
                view = self._pool_features(load_views(scene, [frame], size, depth=c.load_depth, features=c.load_features))
                if view.features is not None:
                    view.features = view.features.half()
                self._cache[(scene_index, frame)] = view
        views = [self._cache[(scene_index, frame)] for frame in frames]

        def cat(name: str) -> Optional[Tensor]:
            values = [getattr(v, name) for v in views]
            return None if values[0] is None else torch.cat(values)

        return Views(
            indices=list(frames),
            images=cat("images"),
            intrinsics=cat("intrinsics"),
            camera_to_worlds=cat("camera_to_worlds"),
            depth=cat("depth"),
            features=cat("features"),
        )

    def _pool_features(self, views: Views) -> Views:
        factor = self.config.feature_downsample
        if views.features is not None and factor > 1:
            views.features = F.avg_pool2d(views.features, factor, ceil_mode=True)
        return views

    def load(self, picks: List[Tuple[int, List[int]]], seed: int) -> TrainBatch:
        """Load a drawn sample (runs in the worker threads)."""
        views = [self._views(i, frames) for i, frames in picks]

        def stack(name: str) -> Optional[Tensor]:
            values = [getattr(v, name) for v in views]
            return None if any(v is None for v in values) else torch.stack(values)

        return TrainBatch(
            images=stack("images"),
            intrinsics=stack("intrinsics"),
            camera_to_worlds=stack("camera_to_worlds"),
            depth=stack("depth"),
            features=stack("features"),
            seed=seed,
        )

    def next_train(self, step: int) -> TrainBatch:  # type: ignore[override]
        """The next training sample, on the training device."""
        while len(self._queue) < self.config.prefetch + 1:
            picks, seed = self.draw()
            self._queue.append((self._pool.submit(self.load, picks, seed), copy.deepcopy(self.rng.bit_generator.state)))
        future, state = self._queue.popleft()
        self._handed_out_state = state
        self.train_count += 1
        batch = future.result().to(self.device)
        self._last_rays = batch.images.shape[0] * batch.images.shape[1] * batch.images.shape[3] * batch.images.shape[4]
        return batch

    def get_extra_state(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {"sampler": copy.deepcopy(self._handed_out_state), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        for future, _ in self._queue:
            future.cancel()
        self._queue.clear()
        self.rng.bit_generator.state = copy.deepcopy(state["sampler"])
        self._handed_out_state = copy.deepcopy(state["sampler"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])

    def next_eval(self, step: int):
        raise NotImplementedError("ff3r-train has no evaluation split; use scripts/evaluate_synthetic.py")

    def next_eval_image(self, step: int):
        raise NotImplementedError("ff3r-train has no evaluation split; use scripts/evaluate_synthetic.py")

    def get_train_rays_per_batch(self) -> int:
        return self._last_rays

    def get_eval_rays_per_batch(self) -> int:
        return 0

    def get_datapath(self) -> Path:
        return Path(self.config.dataparser.data)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {}


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
            terms["warp"] = self._warp_loss(outputs, views.seed)
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

    def _warp_loss(self, outputs: Dict[str, Any], seed: int) -> Tensor:
        """``L_warp`` (Eq. 4) per scene, averaged; pairs drawn from the step's seed, geometry detached (G->S)."""
        features = outputs["semantic_lifted" if self.config.warp_features == "lifted" else "semantic_low"]
        depth = outputs["depth"].detach()
        extrinsics, intrinsics = outputs["extrinsics"].detach(), outputs["intrinsics"].detach()
        generator = torch.Generator().manual_seed(seed)
        losses = []
        for i in range(features.shape[0]):
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


def default_optimizers(max_steps: int = 30_000, warmup_steps: int = 1_000, lr: float = 2e-4, backbone_scale: float = 0.1):
    """The two parameter groups: new heads at ``lr``, the pretrained backbone at ``backbone_scale * lr``."""

    def group(peak: float) -> Dict[str, Any]:
        return {
            "optimizer": AdamWOptimizerConfig(lr=peak),
            "scheduler": WarmupCosineSchedulerConfig(warmup_steps=warmup_steps, max_steps=max_steps),
        }

    return {"heads": group(lr), "backbone": group(lr * backbone_scale)}


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


if __name__ == "__main__":
    sys.exit(main())
