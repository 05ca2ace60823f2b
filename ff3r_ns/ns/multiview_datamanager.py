"""The multi-view training datamanager of ff3r-train: context sets drawn from one scene or many.

Each step draws ``scenes_per_batch`` scenes and, in each, a context set with the paper's sequential sampling
(:func:`ff3r_ns.data.sampling.sample_training_views`, Appendix A), loaded by :func:`ff3r_ns.data.views.load_views`
in worker threads ahead of use. Step ``t`` of rank ``r`` draws from its own generator, seeded by
``(seed, r, t)``, and reseeds torch from the same triple: ranks draw different scenes, and a run resumed at step
``t`` draws on every rank what the uninterrupted one would, with no sampler state to save (nerfstudio saves
checkpoints from rank 0 only).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Deque, Dict, List, Literal, Optional, Tuple, Type, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.base_datamanager import DataManager, DataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.nn import Parameter

from ff3r_ns.data.sampling import TrainViewSamplingConfig, sample_training_views
from ff3r_ns.data.scene import SceneData
from ff3r_ns.data.views import Views, load_views
from ff3r_ns.ns.dataparsers import FF3RMultiSceneDataParserConfig
from ff3r_ns.training.teachers import TrainBatch


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
    """Seed of the sampler: step t of rank r draws with the seed (seed, r, t), so ranks draw different scenes and a
    resumed run draws what the uninterrupted one would."""
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
    """Yields :class:`TrainBatch` es, the sample of step ``t`` a function of (seed, rank, t) alone.

    Samples are drawn in the main thread and loaded by worker threads, ``prefetch`` steps ahead.
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
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else local_rank
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.num_workers), thread_name_prefix="ff3r-views")
        self._queue: Deque[Tuple[int, Future]] = deque()
        """(step, loading sample) of the steps drawn ahead."""
        self._cache: Dict[Tuple[int, int], Views] = {}
        self._last_rays = 0
        self.last_views = 0
        """Views per scene of the last sample handed out."""
        super().__init__()

    def setup_train(self) -> None:
        """Nothing to set up: samples are drawn on demand."""

    def setup_eval(self) -> None:
        """ff3r-train has no evaluation split (evaluate held-out scenes with scripts/evaluate_synthetic.py)."""

    def draw(self, step: int) -> Tuple[List[Tuple[int, List[int]]], Tuple[int, ...]]:
        """Step ``step``'s sample: (scene index, frame indices) per scene, and each scene's seed for its other choices."""
        rng = np.random.default_rng([self.config.seed, self.rank, step])
        sampling = self.config.sampling
        if sampling.random_num_views:
            num_views = int(rng.integers(sampling.min_views, sampling.max_views + 1))
        else:
            num_views = sampling.max_views
        fixed = replace(sampling, max_views=num_views, random_num_views=False)
        count = self.config.scenes_per_batch
        chosen = rng.choice(len(self.scenes), size=count, replace=len(self.scenes) < count)
        picks = [(int(i), sample_training_views(len(self.scenes[i]), fixed, rng)) for i in chosen]
        shortest = min(len(frames) for _, frames in picks)  # short scenes give fewer views
        seeds = tuple(int(seed) for seed in rng.integers(2**31 - 1, size=len(picks)))
        return [(i, frames[:shortest]) for i, frames in picks], seeds

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

    def load(self, picks: List[Tuple[int, List[int]]], seeds: Tuple[int, ...]) -> TrainBatch:
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
            seeds=seeds,
        )

    def next_train(self, step: int) -> TrainBatch:  # type: ignore[override]
        """Step ``step``'s training sample, on the training device; torch is reseeded from (seed, rank, step)."""
        if self._queue and self._queue[0][0] != step:  # a jump (a resume, a test's own steps): drop what was drawn
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
        for ahead in range(len(self._queue), self.config.prefetch + 1):
            self._queue.append((step + ahead, self._pool.submit(self.load, *self.draw(step + ahead))))
        _, future = self._queue.popleft()
        torch.manual_seed(int(np.random.SeedSequence([self.config.seed, self.rank, step]).generate_state(1)[0]))
        self.train_count += 1
        batch = future.result().to(self.device)
        self.last_views = batch.images.shape[1]
        self._last_rays = batch.images.shape[0] * batch.images.shape[1] * batch.images.shape[3] * batch.images.shape[4]
        return batch

    def get_extra_state(self) -> Dict[str, Any]:
        """The sampler's seed; samples depend on (seed, rank, step) alone, so there is no RNG state to save."""
        return {"seed": self.config.seed}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        if "seed" in state and state["seed"] != self.config.seed:
            CONSOLE.print(
                f"[yellow]ff3r-train: the checkpoint was trained with sampler seed {state['seed']}, this run has "
                f"{self.config.seed}: from here on it draws other samples than the interrupted run would have"
            )

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
