"""``ns-train ff3r``: feed-forward reconstruction of one scene, saved as a normal nerfstudio run.

    ns-train ff3r --data SCENE [--pipeline.weights CHECKPOINT] [--pipeline.views sparse-6] ...

The pipeline reads the scene (any source the readers accept; the ``ff3r-scene`` dataparser detects
which), picks the context views (:func:`ff3r_ns.eval.protocol.select_views`), runs the network once and
fills an :class:`~ff3r_ns.ns.model.FF3RModel` with the predicted Gaussians. Nothing is optimized per
scene unless ``--pipeline.refine-steps N`` asks for a short photometric refinement (L1 on the context
views, Adam), which the trainer runs as its iterations; without it the trainer runs none and saves the
checkpoint at once.

Frames: when the scene has poses, the predicted cameras are aligned to them (Umeyama Sim(3) on the
camera centres) and the Gaussians, cameras and depth are moved into the dataset's frame, so that the
viewer, the evaluation and the export all work there; the pose error after alignment is printed and
stored in ``RUN/reconstruction.json``. Without poses, the prediction is turned upright (cameras' up
along +z, see :func:`~ff3r_ns.eval.protocol.upright_sim3`).

What a checkpoint holds: the model (Gaussians and the semantic lifting layer) and
:class:`ReconstructionState` (the context frames, their predicted cameras and depth, the Sim(3) used),
never the network's weights. ``ns-eval``, ``ns-viewer`` and ``ns-export`` load it without running or
even having the network.
"""

from __future__ import annotations

import importlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn
from torch.nn import Parameter

import ff3r_ns
from ff3r_ns.data.synthetic import CLASS_NAMES, class_embeddings
from ff3r_ns.data.views import Views, fit_size, load_views
from ff3r_ns.eval.alignment import pose_errors
from ff3r_ns.eval.class_text import class_text, is_synthetic_room
from ff3r_ns.eval.evaluate import ClassText, EvalConfig, Evaluation, Reconstruction, evaluate_reconstruction
from ff3r_ns.eval.prediction import align_prediction
from ff3r_ns.eval.pseudo_labels import lseg_pseudo_labeler
from ff3r_ns.eval.protocol import (
    POSE_REFINE_LR,
    POSE_REFINE_STEPS,
    VIEW_SETTINGS,
    ViewSelection,
    select_views,
    sim3_matrix,
)
from ff3r_ns.network.cameras import c2w_to_w2c
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.precision import prepare_inference
from ff3r_ns.network.weights import WeightsUnavailable, load_ff3r_checkpoint
from ff3r_ns.ns.dataparsers import opencv_cameras
from ff3r_ns.ns.errors import InferenceOutOfMemory, inference_memory_advice, requested_bytes, user_errors
from ff3r_ns.ns.model import FF3RModel, FF3RModelConfig, lifted_dot, semantic_projection
from ff3r_ns.ns.scene_datamanager import FF3RDataManager, FF3RDataManagerConfig

SHIPPED_WEIGHTS = Path(ff3r_ns.__file__).resolve().parent / "weights" / "ff3r-small"
"""The checkpoint ``ns-train ff3r`` uses when ``--pipeline.weights`` is not given (the small preset)."""
REPORT_FILE = "reconstruction.json"
"""What ``ns-train ff3r`` writes beside config.yml: timings, Gaussian counts, views, pose errors."""


# --------------------------------------------------------------------------------------------------
# What a checkpoint keeps besides the model
# --------------------------------------------------------------------------------------------------


class ReconstructionState(nn.Module):
    """The prediction besides the Gaussians, in the run's frame, as buffers of any size."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("context_indices", torch.zeros(0, dtype=torch.long))  # [s] frames of the scene
        self.register_buffer("context_c2w", torch.zeros(0, 4, 4))  # [s, 4, 4] OpenCV camera-to-world
        self.register_buffer("context_intrinsics", torch.zeros(0, 3, 3))  # [s, 3, 3] pixels of the views
        self.register_buffer("depth", torch.zeros(0, 0, 0, dtype=torch.float16))  # [s, h, w] predicted z-depth
        self.register_buffer("prediction_to_run", torch.eye(4, dtype=torch.float64))  # Sim(3) [[sR, t], [0, 1]]
        self.register_buffer("image_hw", torch.zeros(2, dtype=torch.long))  # the views' (h, w)

    def _load_from_state_dict(self, state_dict: Mapping[str, Tensor], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Buffers take the checkpoint's shapes (a fresh state is empty).
        for name, buffer in self._buffers.items():
            if buffer is not None and prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name], device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def scale(self) -> float:
        """The Sim(3)'s scale: run-frame units per predicted unit."""
        return float(torch.linalg.det(self.prediction_to_run[:3, :3]) ** (1 / 3))

    def cameras(self) -> Cameras:
        """The context cameras for nerfstudio."""
        return opencv_cameras(self.context_c2w, self.context_intrinsics, *(int(v) for v in self.image_hw))


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------


def resolve_weights(weights: Optional[str]) -> str:
    """The FF3R checkpoint to load: ``weights`` as given, or the shipped one when it is None.

    Raises:
        WeightsUnavailable: None was given and the shipped checkpoint is not in this installation.
    """
    if weights is not None:
        return weights
    if not (SHIPPED_WEIGHTS / "model.safetensors").is_file():
        raise WeightsUnavailable(
            f"the shipped FF3R checkpoint is not there ({SHIPPED_WEIGHTS} has no model.safetensors): this "
            "installation does not include it yet. Pass a checkpoint with --pipeline.weights FOLDER (a folder "
            "written by save_ff3r_checkpoint or ns-train ff3r-train) or a Hugging Face hub id."
        )
    return str(SHIPPED_WEIGHTS)


class SyntheticTextSpace(nn.Module):
    """The text space of a synthetic room's stand-in teacher: a class name's embedding is its row of
    :func:`~ff3r_ns.data.synthetic.class_embeddings`. Has ``TextEncoder.encode``'s signature.

    Args:
        generic_unknown: Embed any other prompt as "a generic thing", the normalized mean of the class
            embeddings (what the viewer's canonical relevancy negatives "object", "things" stand for), with a
            warning; False: other prompts are an error.
    """

    def __init__(self, generic_unknown: bool = False) -> None:
        super().__init__()
        self.generic_unknown = generic_unknown

    def encode(self, prompts: Sequence[str]) -> Tensor:
        table = class_embeddings()
        unknown = [prompt for prompt in prompts if prompt not in CLASS_NAMES]
        if unknown and not self.generic_unknown:
            raise ValueError(
                f"a synthetic room's text space knows the class names {list(CLASS_NAMES)} only, not {unknown}"
            )
        if unknown:
            CONSOLE.print(
                f"[yellow]Not classes of the synthetic room, embedded as a generic thing: {unknown}", soft_wrap=True
            )
        generic = torch.nn.functional.normalize(table.mean(dim=0), dim=0)
        return torch.stack([table[CLASS_NAMES.index(p)] if p in CLASS_NAMES else generic for p in prompts])


@dataclass
class FF3RPipelineConfig(VanillaPipelineConfig):
    """Feed-forward reconstruction: one network pass over the context views of one scene."""

    _target: Type = field(default_factory=lambda: FF3RPipeline)
    datamanager: FF3RDataManagerConfig = field(default_factory=FF3RDataManagerConfig)
    """How the scene is read."""
    model: FF3RModelConfig = field(default_factory=FF3RModelConfig)
    """The Gaussians' model; its sh_degree and semantic_dim are taken from the network."""
    weights: Optional[str] = None
    """FF3R checkpoint: a folder with model.safetensors + config.json, or a Hugging Face hub id. None: the
    shipped checkpoint ff3r_ns/weights/ff3r-small."""
    views: Literal["all", "sparse-2", "sparse-6", "sparse-16", "dense-32", "dense-48", "dense-64"] = "all"
    """Context views: "all" (up to max_views, evenly spaced; on posed scenes every holdout_every-th frame is
    held out for ns-eval), or an evaluation split of the paper (sparse: test interval 1; dense: 72 views
    sampled by spatial distribution, every 8th a target)."""
    max_views: int = 64
    """Most context views with views="all"; longer scenes give this many evenly spaced frames."""
    holdout_every: int = 8
    """With views="all" on a posed scene, frames 4, 12, 20, ... (this // 2 + k * this) are held-out targets
    for ns-eval; 0 holds out nothing (every frame is a context view)."""
    image_long_side: Optional[int] = None
    """Long side of the views fed to the network (aspect kept, sides multiples of 14). None: the size the
    network was trained at (its config's image_size: 224 for small, 448 for large)."""
    voxelize: Optional[bool] = None
    """Semantic-aware voxelization (Eq. 5-8) of the pixel-aligned Gaussians; None: the network's setting."""
    refine_steps: int = 0
    """Photometric refinement of the predicted Gaussians (L1 on the context views, Adam, one view a step);
    0: none, the reconstruction is purely feed-forward. This replaces --max-num-iterations."""
    eval_pose_steps: int = POSE_REFINE_STEPS
    """ns-eval: Adam steps refining each target pose photometrically, the Gaussians frozen (AnySplat, Uni3R)."""
    eval_pose_lr: float = POSE_REFINE_LR
    """ns-eval: learning rate of the target-pose refinement."""
    lpips_weights: Optional[str] = None
    """ns-eval: torchvision VGG16 checkpoint for LPIPS (vgg16-397923af.pth); None: torchvision's cache. LPIPS is
    reported absent, with the reason, where the file is missing."""
    lseg_weights: Optional[str] = None
    """ns-eval: LSeg's demo_e200.ckpt; with it, mIoU and accuracy against LSeg's own 2D argmax over the class
    words on the same views (``miou_lseg_pseudo``, the Feature-3DGS protocol), besides the labels' ``miou``."""


class FF3RPipeline(Pipeline):
    """Runs FF3R once on the context views (``ns-train``) or restores its result (``ns-eval``,
    ``ns-viewer``, ``ns-export``); refines and evaluates the predicted Gaussians."""

    config: FF3RPipelineConfig
    datamanager: FF3RDataManager
    _model: FF3RModel

    def __init__(
        self,
        config: FF3RPipelineConfig,
        device: torch.device | str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[torch.cuda.amp.GradScaler] = None,
    ) -> None:
        super().__init__()
        if world_size > 1:
            raise ValueError(
                "ns-train ff3r reconstructs one scene in one forward pass on one device; drop --machine.num-devices "
                "(multi-GPU is for training the network: ns-train ff3r-train)"
            )
        if config.views not in VIEW_SETTINGS:
            raise ValueError(f"--pipeline.views must be one of {', '.join(VIEW_SETTINGS)}, got {config.views!r}")
        self.config = config
        self.test_mode = test_mode
        self.world_size = world_size
        device = torch.device(device)
        weights = resolve_weights(config.weights) if test_mode == "val" else None  # fail before reading the scene
        self.datamanager = config.datamanager.setup(device=device, test_mode=test_mode, world_size=1, local_rank=0)
        self.state = ReconstructionState()
        self.report: Dict[str, Any] = {}
        self.selection: Optional[ViewSelection] = None
        if self.datamanager.scene is not None:
            scene = self.datamanager.scene
            centres = scene.camera_to_worlds[:, :3, 3] if scene.has_poses else None
            self.selection = select_views(len(scene), config.views, config.max_views, config.holdout_every, centres)

        network = None
        if weights is not None:  # ns-train; the other modes restore a checkpoint instead
            network = load_ff3r_checkpoint(weights, device="cpu")
            # The model must hold what the network predicts; FF3RTrainer saves config.yml again with these.
            config.model.sh_degree = network.config.heads.sh_degree
            config.model.semantic_dim = network.config.heads.semantic_dim
        self._model = config.model.setup(
            scene_box=self.datamanager.scene_box,
            num_train_data=0 if self.selection is None else len(self.selection.context),
            metadata={},
            device=device,
            grad_scaler=grad_scaler,
        )
        self.model.to(device)
        if self.datamanager.scene is not None and is_synthetic_room(self.datamanager.scene.root):
            # No CLIP offline, and none needed: the room's classes live in its teacher's text space.
            self.model.set_text_encoder(SyntheticTextSpace(generic_unknown=True))
        if network is not None:
            self._reconstruct(network, device)

    # ---------------------------------------------------------------------------------------------
    # The forward pass
    # ---------------------------------------------------------------------------------------------

    def _view_size(self, network: FF3R) -> tuple[int, int]:
        assert self.datamanager.scene is not None and self.selection is not None
        long_side = self.config.image_long_side or network.config.image_size
        sizes = Counter(tuple(int(v) for v in self.datamanager.scene.image_sizes[i]) for i in self.selection.context)
        height, width = sizes.most_common(1)[0][0]
        return fit_size(height, width, long_side, multiple=network.config.geometry.patch_size)

    @torch.no_grad()
    def _timed_forward(self, network: FF3R, images: Tensor) -> tuple[Any, float, Optional[float]]:
        """The network's output on ``images``, the seconds of the pass, and those of the CUDA warm-up (or None)."""
        device = images.device
        warmup_seconds = None
        if device.type == "cuda":
            static = torch.cuda.memory_allocated(device)  # the weights
            # The first CUDA call of a process loads kernels and library handles (seconds on an H100, more
            # than the pass itself): a 2-view pass takes that cost, so the timed pass is the network's own.
            start = time.perf_counter()
            network(images[:, :2], voxelize=self.config.voxelize)
            torch.cuda.synchronize(device)
            warmup_seconds = time.perf_counter() - start
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        try:
            out = network(images, voxelize=self.config.voxelize)
        except torch.cuda.OutOfMemoryError as error:
            peak = torch.cuda.max_memory_allocated(device) + requested_bytes(str(error))
            del error  # its traceback holds the pass's tensors
            torch.cuda.empty_cache()
            raise InferenceOutOfMemory(
                inference_memory_advice(images.shape[1], static, peak, torch.cuda.get_device_properties(device).total_memory)
            ) from None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out, time.perf_counter() - start, warmup_seconds

    @torch.no_grad()
    def _reconstruct(self, network: FF3R, device: torch.device) -> None:
        """One forward pass; fills the model, the state and the report."""
        scene, selection = self.datamanager.scene, self.selection
        assert scene is not None and selection is not None
        height, width = self._view_size(network)
        views = load_views(scene, selection.context, (height, width), depth=True, labels=True)
        # On CUDA the backbone's matmuls run in bf16 and the heads in float32, as VGGT runs (precision.py);
        # everything is float32 on the CPU.
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        network = prepare_inference(network, device, dtype)
        images = views.images[None].to(device=device)
        # nerfstudio's ns-train turns on cuDNN autotuning, which tunes every convolution shape on first use:
        # seconds for a single pass, so it is off here.
        benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
        try:
            out, seconds, warmup_seconds = self._timed_forward(network, images)
        finally:
            torch.backends.cudnn.benchmark = benchmark
        num_views, before, after = len(views), out.num_pixel_gaussians, len(out.gaussians)
        voxelized = self.config.voxelize if self.config.voxelize is not None else network.config.voxel.enabled
        CONSOLE.print(
            f"FF3R forward pass: {seconds:.3f} s for {num_views} views of {width}x{height} on {device.type} "
            f"({'bf16 backbone, float32 heads' if dtype == torch.bfloat16 else 'float32'})"
            + ("" if warmup_seconds is None else f", after a 2-view warm-up pass of {warmup_seconds:.3f} s"),
            soft_wrap=True,
        )
        CONSOLE.print(
            f"Gaussians: {before:,} pixel-aligned -> {after:,} "
            + ("after voxelization" if voxelized else "(voxelization off)"),
            soft_wrap=True,
        )

        dataset_c2w = None
        if scene.has_poses:
            assert views.camera_to_worlds is not None
            dataset_c2w = views.camera_to_worlds.double().numpy()
        aligned, sim3, gaussians = align_prediction(out, dataset_c2w)
        scale, rotation, translation = sim3
        errors: Optional[dict[str, float]] = None
        if dataset_c2w is not None:
            errors = pose_errors(aligned, dataset_c2w, align=False)
            CONSOLE.print(
                "Predicted cameras vs the scene's poses after Sim(3) alignment: "
                f"rotation {errors['rotation_deg_mean']:.2f} deg mean ({errors['rotation_deg_median']:.2f} median), "
                f"translation {errors['translation_mean']:.4f} mean ({errors['translation_median']:.4f} median) "
                "scene units",
                soft_wrap=True,
            )
        self.model.load_gaussians(gaussians, network.gaussian_head.semantic_proj.state_dict())

        state = self.state
        state.context_indices = torch.tensor(views.indices, dtype=torch.long)
        state.context_c2w = torch.from_numpy(aligned).float()
        state.context_intrinsics = out.intrinsics[0].float().cpu()
        state.depth = (out.depth[0].float() * scale).to(torch.float16).cpu()
        state.prediction_to_run = torch.from_numpy(sim3_matrix(scale, rotation, translation))
        state.image_hw = torch.tensor([height, width], dtype=torch.long)
        self.report = {
            "scene": str(scene.root),
            "weights": resolve_weights(self.config.weights),
            "device": str(device),
            "dtype": "bf16 backbone matmuls, float32 heads" if dtype == torch.bfloat16 else "float32",
            "forward_seconds": seconds,
            "warmup_seconds": warmup_seconds,
            "gaussians_pixel_aligned": before,
            "gaussians": after,
            "voxelized": bool(voxelized),
            "views": self.config.views,
            "image_hw": [height, width],
            "context_frames": [int(i) for i in selection.context],
            "target_frames": [int(i) for i in selection.targets],
            "frame": "the scene's (Sim(3)-aligned)" if scene.has_poses else "upright prediction frame (no poses)",
            "prediction_to_run": {
                "scale": float(scale),
                "rotation": rotation.tolist(),
                "translation": translation.tolist(),
            },
            "pose_errors": errors if errors is not None else {"absent": "the scene has no camera poses"},
        }
        if device.type == "cuda":
            torch.cuda.empty_cache()
        self._attach_views(views)

    def _attach_views(self, views: Optional[Views] = None) -> None:
        """Hands the context views and their cameras, and the held-out targets, to the datamanager (loading
        the views if not given)."""
        scene = self.datamanager.scene
        assert scene is not None
        indices = [int(i) for i in self.state.context_indices]
        if not indices or max(indices) >= len(scene):
            raise ValueError(
                f"the checkpoint's context frames {indices[:8]}... do not fit the scene at {scene.root} "
                f"({len(scene)} frames): the data changed since ns-train ff3r; run it again"
            )
        if views is None:
            hw = tuple(int(v) for v in self.state.image_hw)
            views = load_views(scene, indices, hw, depth=True, labels=True)
        self.datamanager.set_context(views, self.state.cameras(), self.selection.targets if self.selection else ())

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        state = {key.removeprefix("module."): value for key, value in loaded_state.items()}
        self.model.update_to_step(step)
        self.load_state_dict(state)
        if self.datamanager.scene is not None:
            self._attach_views()

    # ---------------------------------------------------------------------------------------------
    # Refinement (the trainer's iterations)
    # ---------------------------------------------------------------------------------------------

    def get_train_loss_dict(self, step: int) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Dict[str, Tensor]]:
        camera, batch = self.datamanager.next_train(step)
        outputs = self.model.get_outputs(camera)
        loss = (outputs["rgb"] - batch["image"]).abs().mean()
        return (
            outputs,
            {"rgb_l1": loss},
            {"psnr": -10 * torch.log10(((outputs["rgb"] - batch["image"]) ** 2).mean().detach())},
        )

    def get_eval_loss_dict(self, step: int) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Dict[str, Tensor]]:
        self.eval()
        with torch.no_grad():
            result = self.get_train_loss_dict(step)
        self.train()
        return result

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        return self.datamanager.get_training_callbacks(
            training_callback_attributes
        ) + self.model.get_training_callbacks(training_callback_attributes)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {**self.datamanager.get_param_groups(), **self.model.get_param_groups()}

    # ---------------------------------------------------------------------------------------------
    # Evaluation
    # ---------------------------------------------------------------------------------------------

    def _render(self, c2w: Tensor, K: Tensor, features: bool = False) -> dict[str, Optional[Tensor]]:
        """Renders the model's Gaussians (frozen) at an OpenCV camera-to-world pose in the run's frame."""
        p = {name: value.detach() for name, value in self.model.gauss_params.items()}
        device = p["means"].device
        height, width = (int(v) for v in self.state.image_hw)
        out = self.model.render_params(
            p,
            c2w_to_w2c(c2w.to(device).float())[None],
            K.to(device).float()[None],
            width,
            height,
            self.model.background_color.to(device),
            features=features,
        )
        return {key: None if value is None else value[0] for key, value in out.items()}

    def _reconstruction(self) -> Reconstruction:
        """The saved run as the evaluation protocol sees it."""
        state, device = self.state, self.model.device
        projection = semantic_projection(self.model.semantic_proj.state_dict()).to(device)
        seconds = self.report.get("forward_seconds")
        return Reconstruction(
            render=self._render,
            classify=lambda features, text: lifted_dot(features, projection, text),
            context_indices=[int(i) for i in state.context_indices],
            context_c2w=state.context_c2w.to(device),
            context_intrinsics=state.context_intrinsics,
            image_hw=(int(state.image_hw[0]), int(state.image_hw[1])),
            depth=state.depth.float(),
            scale=state.scale,
            seconds=seconds,
            seconds_absent=f"a restored run does not time its forward pass again: see forward_seconds in {REPORT_FILE}",
        )

    def _class_text(self) -> ClassText:
        """The class words' embeddings in the reconstruction's text space, or why none."""
        assert self.datamanager.scene is not None
        return class_text(self.datamanager.scene.root, self.model.config.text_encoder_weights, self.config.lseg_weights)

    def _evaluate(self, output_path: Optional[Path] = None) -> Evaluation:
        """Every metric of the run, or the reason it is absent (``ff3r_ns.eval.evaluate``)."""
        scene, context = self.datamanager.scene, self.datamanager.context
        if scene is None or context is None or self.selection is None:
            raise RuntimeError("evaluation needs the scene: load the run with ns-eval (test mode), not for inference")
        labeler, pseudo_absent = lseg_pseudo_labeler(self.config.lseg_weights, CLASS_NAMES, device=self.model.device)
        config = EvalConfig(self.config.eval_pose_steps, self.config.eval_pose_lr, self.config.lpips_weights)
        return evaluate_reconstruction(
            self._reconstruction(), scene, context, self.selection.targets, self._class_text(), config,
            pseudo_labeler=labeler, pseudo_absent=pseudo_absent, output_path=output_path, console=CONSOLE,
            no_targets=f"no held-out target views (views={self.config.views!r}, holdout_every="
            f"{self.config.holdout_every}, {len(scene)} frames)",
        )  # fmt: skip

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ) -> Dict[str, Any]:
        """Novel-view PSNR/SSIM/LPIPS, mIoU and accuracy (labels; LSeg pseudo-labels with --pipeline.lseg-weights),
        depth AbsRel and inlier ratio, context-view PSNR, pose errors and time; what can't be computed is listed
        under ``"absent"`` with the reason."""
        if output_path is not None:
            Path(output_path).mkdir(parents=True, exist_ok=True)
        results = self._evaluate(output_path).summary(get_std)
        for name, reason in results["absent"].items():
            CONSOLE.print(f"[yellow]{name}: not computed ({reason})", soft_wrap=True)
        return results

    def get_eval_image_metrics_and_images(self, step: int) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Metrics and images of one view: the first held-out target at its dataset pose (unrefined), else the
        first context view."""
        scene = self.datamanager.scene
        assert scene is not None and self.selection is not None
        if scene.has_poses and self.selection.targets:
            hw = tuple(int(v) for v in self.state.image_hw)
            view = load_views(scene, self.selection.targets[:1], hw)
            K = view.intrinsics if view.intrinsics is not None else self.state.context_intrinsics[:1]
            assert view.camera_to_worlds is not None
            camera = opencv_cameras(view.camera_to_worlds, K, *hw)
            batch = {"image": view.images[0].permute(1, 2, 0)}
        else:
            camera, batch = self.datamanager.next_eval_image(0)
        outputs = self.model.get_outputs_for_camera(camera.to(self.model.device))
        metrics, images = self.model.get_image_metrics_and_images(
            outputs, {"image": batch["image"].to(self.model.device)}
        )
        metrics["num_rays"] = int(batch["image"].shape[0] * batch["image"].shape[1])
        return metrics, images


# --------------------------------------------------------------------------------------------------
# The trainer and the method
# --------------------------------------------------------------------------------------------------


@dataclass
class FF3RTrainerConfig(TrainerConfig):
    """nerfstudio's trainer, its iterations being the optional refinement (``--pipeline.refine-steps``)."""

    _target: Type = field(default_factory=lambda: FF3RTrainer)


class FF3RTrainer(Trainer):
    """Runs ``pipeline.refine_steps`` iterations (0: none, the checkpoint is saved at once), saves config.yml
    again once the pipeline has set the model's sizes from the network, and writes ``reconstruction.json``."""

    config: FF3RTrainerConfig
    pipeline: FF3RPipeline

    def __init__(self, config: FF3RTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        config.max_num_iterations = max(0, config.pipeline.refine_steps)
        if config.max_num_iterations == 0:
            config.logging.local_writer.enable = False  # its progress table divides by the iteration count
        super().__init__(config, local_rank, world_size)

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        with user_errors("ns-train ff3r", self.base_dir):
            super().setup(test_mode)
        if self.local_rank == 0 and self.pipeline.report:
            self.config.save_config()
            path = self.base_dir / REPORT_FILE
            path.write_text(json.dumps(self.pipeline.report, indent=2) + "\n")
            CONSOLE.print(f"Reconstruction report: {path}", soft_wrap=True)


def _refinement_optimizers() -> dict[str, dict]:
    """Adam per Gaussian parameter group, at splatfacto's learning rates, no schedule."""
    rates = {
        "means": 1.6e-4,
        "scales": 5e-3,
        "quats": 1e-3,
        "features_dc": 2.5e-3,
        "features_rest": 2.5e-3 / 20,
        "opacities": 5e-2,
        "semantic": 1e-3,
    }
    return {name: {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": None} for name, lr in rates.items()}


ff3r_method = MethodSpecification(
    config=FF3RTrainerConfig(
        method_name="ff3r",
        max_num_iterations=0,
        steps_per_eval_batch=0,
        steps_per_eval_image=0,
        steps_per_eval_all_images=0,
        mixed_precision=False,
        pipeline=FF3RPipelineConfig(),
        optimizers=_refinement_optimizers(),
        vis="tensorboard",
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
    ),
    description="FF3R: semantic 3D Gaussians, cameras and depth from unposed images in one forward pass",
)


# --------------------------------------------------------------------------------------------------
# Runs saved before the data side moved to ff3r_ns.ns.scene_datamanager
# --------------------------------------------------------------------------------------------------

_MOVED = ("FF3RSceneDataParserConfig", "FF3RSceneDataParser", "ViewsDataset")
"""Classes that lived in this module once: the config.yml of a run saved then names them
``ff3r_ns.ns.reconstruct.<name>`` (the datamanager's two classes are imported above)."""


def __getattr__(name: str) -> Any:
    """The old paths of the moved classes (PEP 562), so that ``yaml.load`` of an older config.yml finds them."""
    if name in _MOVED:
        return getattr(importlib.import_module("ff3r_ns.ns.scene_datamanager"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
