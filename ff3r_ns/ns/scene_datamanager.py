"""The data side of ``ns-train ff3r``: one scene read through an FF3R dataparser, and its context views.

The ``ff3r-scene`` dataparser detects the kind of source (image folder, video, transforms.json, COLMAP,
7-Scenes, ScanNet, ScanNet++; docs/DATASETS.md); the datamanager holds the scene and, once the pipeline has run the network, serves the context views
as the network saw them with their predicted cameras (the batches of the optional refinement, and what the
viewer shows as training cameras), and the held-out target views at the scene's poses as its eval views (what
``ns-render interpolate`` and ``ns-render spiral`` start from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Type

import numpy as np
import torch
import tyro
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.base_datamanager import DataManager, DataManagerConfig, VanillaDataManager
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.data.utils.dataloaders import FixedIndicesEvalDataloader
from nerfstudio.plugins.registry_dataparser import discover_dataparsers
from torch.nn import Parameter

from ff3r_ns.data.readers import read_scene
from ff3r_ns.data.scene import SceneData
from ff3r_ns.data.views import Views, load_views
from ff3r_ns.ns.dataparsers import FF3RDataParser, FF3RDataParserConfig, opencv_cameras


@dataclass
class FF3RSceneDataParserConfig(FF3RDataParserConfig):
    """Any scene the readers accept, its kind detected: an image folder, a video, a nerfstudio scene
    (transforms.json, DL3DV-10K), a COLMAP model, a 7-Scenes sequence folder, a ScanNet or ScanNet++ scene."""

    _target: Type = field(default_factory=lambda: FF3RSceneDataParser)
    data: Path = Path()
    """The scene: a folder, a transforms.json or a video file."""


class FF3RSceneDataParser(FF3RDataParser):
    config: FF3RSceneDataParserConfig

    def read(self) -> list[SceneData]:
        return [read_scene(self.config.data, verify=self.config.verify_images)]


def _ff3r_dataparsers() -> dict[str, FF3RDataParserConfig]:
    """``ff3r-scene`` first (the default), then the registered FF3R dataparsers (``ff3r-images``, ...)."""
    registered, _ = discover_dataparsers()
    found = {name: config for name, config in registered.items() if isinstance(config, FF3RDataParserConfig)}
    return {"ff3r-scene": FF3RSceneDataParserConfig(), **found}


FF3RDataParserUnion = tyro.conf.OmitSubcommandPrefixes[
    tyro.extras.subcommand_type_from_defaults(_ff3r_dataparsers(), prefix_names=False)
]


class ViewsDataset(InputDataset):
    """The context views as the network saw them (cropped and resized), served from memory."""

    def __init__(self, dataparser_outputs: DataparserOutputs, images: np.ndarray):
        super().__init__(dataparser_outputs)
        self._images = images

    def get_numpy_image(self, image_idx: int) -> np.ndarray:
        return self._images[image_idx]


@dataclass
class FF3RDataManagerConfig(DataManagerConfig):
    """Reads one scene through an FF3R dataparser; the pipeline decides which views it serves."""

    _target: Type = field(default_factory=lambda: FF3RDataManager)
    dataparser: FF3RDataParserUnion = field(default_factory=FF3RSceneDataParserConfig)  # type: ignore[valid-type]
    """How to read the scene; ff3r-scene detects the kind of source."""


class FF3RDataManager(VanillaDataManager):
    """The scene, and once the pipeline has them, its context views with their predicted cameras.

    ``next_train`` cycles through the context views (the refinement's batches). ``eval_dataset`` (and
    ``eval_dataloader``) hold the held-out targets at the scene's poses, or the context views where there
    are none. In "inference" mode (``ns-export``) the scene is not read at all, so a run exports even after
    its data has moved.

    A ``VanillaDataManager`` by type only (its ``__init__`` never runs, every method nerfstudio calls is
    overridden): ``ns-render spiral`` accepts no other kind of datamanager.
    """

    config: FF3RDataManagerConfig

    def __init__(
        self,
        config: FF3RDataManagerConfig,
        device: torch.device | str = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs: Any,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.test_mode = test_mode
        if config.data is not None:
            config.dataparser.data = Path(config.data)
        self.dataparser = config.dataparser.setup()
        self.scene: Optional[SceneData] = None
        self.scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
        self.context: Optional[Views] = None
        if test_mode != "inference":
            if Path(config.dataparser.data) == Path():
                raise ValueError(
                    "no scene given: pass it with --data (an image folder, a video, a transforms.json, a COLMAP "
                    "or 7-Scenes scene)"
                )
            self.train_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="train")
            self.scene = self.train_dataparser_outputs.metadata["scene"]
            self.scene_box = self.train_dataparser_outputs.scene_box
        DataManager.__init__(self)  # not VanillaDataManager's, which would set up ray sampling of the dataparser

    def _dataset(self, views: Views, cameras: Cameras) -> ViewsDataset:
        assert self.scene is not None
        images = (views.images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        outputs = DataparserOutputs(
            image_filenames=[self.scene.image_paths[i] for i in views.indices],
            cameras=cameras,
            scene_box=self.scene_box,
        )
        return ViewsDataset(outputs, images)

    def set_context(self, views: Views, cameras: Cameras, targets: Sequence[int] = ()) -> None:
        """Serves ``views`` (as the network saw them) with their predicted ``cameras`` from now on, and the
        frames ``targets`` at the scene's poses as eval views (the context views when there are none).

        A target's intrinsics are the scene's, cut like the views; a scene without them gets the mean of
        the predicted ones (the run's frame is the scene's wherever there are targets: they need poses).
        """
        assert self.scene is not None
        self.train_dataset = self._dataset(views, cameras)
        self.context = views
        self.eval_dataset = self.train_dataset
        if targets:
            target_views = load_views(self.scene, targets, tuple(views.images.shape[-2:]))
            assert target_views.camera_to_worlds is not None, "held-out targets need the scene's poses"
            K = target_views.intrinsics
            if K is None:
                K = cameras.get_intrinsics_matrices().mean(dim=0, keepdim=True).expand(len(targets), 3, 3)
            target_cameras = opencv_cameras(target_views.camera_to_worlds, K, *views.images.shape[-2:])
            self.eval_dataset = self._dataset(target_views, target_cameras)
        self.eval_dataloader = FixedIndicesEvalDataloader(self.eval_dataset, device=self.device)

    def setup_train(self) -> None:
        """Nothing to set up: the pipeline hands over the views (``set_context``)."""

    def setup_eval(self) -> None:
        """Nothing to set up: evaluation loads its target views itself."""

    def _context_batch(self, step: int) -> Tuple[Cameras, Dict]:
        if self.train_dataset is None or self.context is None:
            raise RuntimeError("the FF3R datamanager has no views yet: the pipeline sets them after the forward pass")
        index = step % len(self.context)
        image = self.context.images[index].permute(1, 2, 0).to(self.device)
        return self.train_dataset.cameras[index : index + 1].to(self.device), {"image": image, "image_idx": index}

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        return self._context_batch(step)

    def next_eval(self, step: int) -> Tuple[Cameras, Dict]:
        return self._context_batch(step)

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict]:
        return self._context_batch(step)

    def get_train_rays_per_batch(self) -> int:
        return 0 if self.context is None else int(self.context.images.shape[-2] * self.context.images.shape[-1])

    def get_eval_rays_per_batch(self) -> int:
        return self.get_train_rays_per_batch()

    def get_datapath(self) -> Path:
        return Path(self.config.dataparser.data)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {}
