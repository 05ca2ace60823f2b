"""The network under ff3r-train and its losses (paper Sec. 3.2-3.3, Eq. 9-13): a nerfstudio ``Model``.

:class:`FF3RTrainModel` holds the network, renders every context view from its Gaussians with the predicted
cameras and scores the result; :func:`training_step` is one step's forward pass, the teachers included, shared by
the pipeline (:mod:`ff3r_ns.ns.train`) and ``scripts/benchmark_train.py``.

Memory: with ``activation_checkpointing`` (on by default for the large preset on a GPU) the network's parts
(:mod:`ff3r_ns.network.checkpointing`), the rendering and the losses keep only their inputs and are recomputed in
the backward pass, a few views at a time; the loss and gradients are those of a run without it. Under DDP a
trained semantic encoder's BatchNorm layers are synchronised across ranks (SyncBatchNorm), so that every rank
normalizes with the statistics of the whole batch, as one process would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Type, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn
from torch.nn import Parameter

from ff3r_ns.eval.metrics import psnr
from ff3r_ns.network.checkpointing import run_checkpointed
from ff3r_ns.network.config import FF3RConfig, preset
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.render import Backend, render_gaussians
from ff3r_ns.network.weights import load_ff3r_checkpoint, load_lseg_weights, load_vggt_weights, strict_load
from ff3r_ns.training.losses import (
    LossWeights,
    depth_distillation_loss,
    feature_loss,
    make_lpips,
    point_map_loss,
    pose_distillation_loss,
    rgb_loss,
    total_loss,
)
from ff3r_ns.training.teachers import GeometryTargets, GeometryTeacher, SemanticTeacherKind, TrainBatch, semantic_targets
from ff3r_ns.training.warp import feature_warping_loss, view_pairs

BACKBONE_MODULES = ("aggregator", "camera_head", "depth_head")
"""The network's pretrained parts (VGGT's); everything else trainable is a new head."""


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
    activation_checkpointing: Optional[bool] = None
    """Recompute activations in the backward pass instead of keeping them (non-reentrant torch.utils.checkpoint):
    the encoder's block pairs and DINOv2 blocks, the fusion, the DPT heads and the Gaussians' assembly and
    voxelization, then the rendering and the losses a few views at a time. The loss and the gradients are those
    of a run without it, to float rounding; memory falls several-fold, a step takes about a quarter longer
    (docs/BENCHMARKS.md). None: on for the large preset on a GPU."""
    checkpoint_views: int = 2
    """With checkpointing: views rendered, lifted and scored by LPIPS and L_feat per recomputed chunk (and 2x as
    many directed view pairs per L_warp chunk)."""

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
        self.set_activation_checkpointing(self._resolve_checkpointing())
        if train_semantic and distributed_world_size() > 1:
            self.network.semantic_encoder = sync_batch_norm(self.network.semantic_encoder, self.kwargs.get("device"))

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Checkpoint every part of the network, and render and score ``checkpoint_views`` views at a time (or not)."""
        self.checkpointing = enabled
        self.network.set_activation_checkpointing(enabled)

    def _resolve_checkpointing(self) -> bool:
        """The checkpointing switch, with its automatic default (on for the large network on a GPU)."""
        c = self.config
        if c.checkpoint_views < 1:
            raise ValueError(f"checkpoint_views must be at least 1, got {c.checkpoint_views}")
        on_gpu = torch.device(self.kwargs.get("device") or "cpu").type == "cuda"
        if c.activation_checkpointing is None:
            return on_gpu and self.network.config.geometry == preset("large").geometry
        if c.activation_checkpointing and not on_gpu:
            CONSOLE.print(
                "[yellow]ff3r-train: activation checkpointing on the CPU saves memory but makes each step about a "
                "quarter slower; it is meant for GPUs, where memory is the limit (--pipeline.model.activation-"
                "checkpointing False turns it off)"
            )
        return bool(c.activation_checkpointing)

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
        # Pool to the grid of the stored teacher features if any, else of the semantic encoder (LSeg's half
        # resolution), then lift: the 1x1 lift commutes with average pooling.
        grid = tuple((out.semantic_2d if batch.features is None else batch.features).shape[-2:])
        step = self.config.checkpoint_views if self.checkpointing else s
        chunks = []
        for i in range(b):
            g = out.gaussians.scene(i)
            for start in range(0, s, step):
                views = slice(start, min(start + step, s))
                chunks.append(
                    run_checkpointed(
                        self.checkpointing, self._render_views, g, out.extrinsics[i, views], out.intrinsics[i, views],
                        (h, w), grid,
                    )  # fmt: skip
                )
        colours, depths, pooled, lifted = (torch.cat(parts).reshape(b, s, *parts[0].shape[1:]) for parts in zip(*chunks))
        return {
            "rgb": colours,
            "rendered_depth": depths,
            "semantic_low": pooled,
            "semantic_lifted": lifted,
            "depth": out.depth,
            "pose_enc_list": [p.float() for p in out.pose_enc_list],
            "extrinsics": out.extrinsics,
            "intrinsics": out.intrinsics,
            "semantic_2d": out.semantic_2d,
            "num_gaussians": len(out.gaussians),
        }

    def _render_views(
        self, g: Gaussians, extrinsics: Tensor, intrinsics: Tensor, image_hw: Tuple[int, int], grid: Tuple[int, int]
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Views of one scene rendered with the predicted cameras: RGB [v, 3, h, w], depth [v, h, w], and the
        semantic map pooled to ``grid`` in the rendered low dimension and lifted to 512-d."""
        h, w = image_hw
        rendered = render_gaussians(
            g.means, g.quats, g.scales, g.opacities, g.sh, g.semantic,
            extrinsics, intrinsics, w, h, g.sh_degree, backend=self.config.render_backend,
        )  # fmt: skip
        pooled = F.adaptive_avg_pool2d(rendered["features"].permute(0, 3, 1, 2), grid)
        lifted = self.network.gaussian_head.lift_semantic(pooled.float())
        return rendered["rgb"].permute(0, 3, 1, 2), rendered["depth"][..., 0], pooled, lifted

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
            terms["rgb"] = rgb_loss(outputs["rgb"], views.images, lpips_fn, weights.lpips, self._chunk())
        if weights.feat > 0:
            terms["feat"] = feature_loss(outputs["semantic_lifted"], batch["semantic"], self._chunk())
        if weights.warp > 0:
            terms["warp"] = self._warp_loss(outputs, views.seeds)
        if weights.depth > 0 and geometry.depth is not None:
            terms["depth"] = self._depth_loss(outputs, geometry)
        if weights.pose > 0:
            terms["pose"] = pose_distillation_loss(outputs["pose_enc_list"], geometry.pose_enc)
        if weights.points > 0 and geometry.depth is not None:
            terms["points"] = point_map_loss(
                outputs["depth"], outputs["pose_enc_list"][-1], geometry.depth, geometry.pose_enc, geometry.depth_conf,
                geometry.top_fraction,
            )  # fmt: skip
        total, log = total_loss(terms, weights)
        if metrics_dict is not None:
            metrics_dict.update({f"loss_{name}": value for name, value in log.items()})
        return {"total": total}

    def _chunk(self, factor: int = 1) -> Optional[int]:
        """Views (or directed pairs, ``factor`` 2) per recomputed loss chunk; None without checkpointing."""
        return factor * self.config.checkpoint_views if self.checkpointing else None

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
                    pairs=[tuple(pair) for pair in pairs.tolist()], checkpoint_chunk=self._chunk(2),
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



def training_step(
    model: FF3RTrainModel,
    geometry_teacher: GeometryTeacher,
    semantic_teacher: SemanticTeacherKind,
    views: TrainBatch,
    forward: Optional[nn.Module] = None,
) -> Tuple[Dict[str, Any], Dict[str, Tensor], Dict[str, Any]]:
    """One step's forward pass: the teachers' targets, the network's outputs, ``{"total": L_total}`` and metrics.

    ``forward`` is what runs the model (its DDP wrapper under several ranks; default the model itself). The
    geometry teacher runs first, under ``no_grad``: it keeps no activations into the student's pass.
    """
    with torch.autocast(views.images.device.type, dtype=torch.bfloat16, enabled=model.config.bf16 and views.images.is_cuda):
        geometry = geometry_teacher(views)
    outputs = (forward or model)(views)
    batch = {"views": views, "geometry": geometry, "semantic": semantic_targets(semantic_teacher, views, outputs["semantic_2d"])}
    metrics = model.get_metrics_dict(outputs, batch)
    loss_dict = model.get_loss_dict(outputs, batch, metrics)
    return outputs, loss_dict, metrics


def distributed_world_size() -> int:
    """Processes of the running DDP job (1 outside one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sync_batch_norm(module: nn.Module, device: Union[str, torch.device, None]) -> nn.Module:
    """``module`` with its BatchNorm layers synchronised across the DDP ranks.

    torch synchronises them on GPUs only: a trained encoder under CPU DDP would normalize each rank's scenes
    alone, another model than the one-process run's, so it is refused.
    """
    if torch.device(device or "cpu").type != "cuda":
        raise ValueError(
            "ff3r-train: the trained semantic encoder's BatchNorm can only be synchronised across GPU processes; "
            "under CPU DDP freeze it (--pipeline.model.train-semantic-encoder False, or load LSeg with "
            "--pipeline.model.lseg-weights demo_e200.ckpt)"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
