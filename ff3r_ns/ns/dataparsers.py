"""nerfstudio dataparsers for every scene source: thin adapters over ``ff3r_ns.data.readers``.

Each reads a ``SceneData`` and hands nerfstudio what it expects:

- cameras: OpenGL camera-to-world [N, 3, 4] in the scene's own frame and units (no re-centring or
  rescaling, so ``dataparser_transform`` is the identity); an unposed source gets identity poses as
  placeholders and ``metadata["has_poses"] = False``;
- intrinsics from the source; where it has none, a pinhole with f = ``default_focal_factor`` *
  max(h, w) and the principal point at the image centre, and ``metadata["has_intrinsics"] = False``;
- ``metadata["scene"]``: the ``SceneData`` of the split (same frames, same order as the cameras), and
  ``depth_filenames`` / ``depth_unit_scale_factor`` / ``label_filenames`` / ``feature_filenames``
  (None where the source has none); the multi-scene parser adds ``metadata["scenes"]``, every scene
  read, whatever the split.

Splits: "train" holds every frame (FF3R reconstructs from all views). "val" and "test" hold every
``eval_interval``-th frame (0, 8, 16, ... by default) when the scene has poses, since only then can a
prediction be aligned to them; all frames when it has none. ``holdout_eval`` drops those frames from
"train" instead, for novel-view evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Type, Union

import numpy as np
import torch
from torch import Tensor
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from ff3r_ns.data.readers import (
    read_7scenes,
    read_colmap,
    read_image_folder,
    read_nerfstudio,
    read_scannet,
    read_scannetpp,
    read_scenes,
    read_video,
)
from ff3r_ns.data.scene import SceneData
from ff3r_ns.network.cameras import opencv_to_opengl_c2w


def split_indices(scene: SceneData, split: str, eval_interval: int = 8, holdout_eval: bool = False) -> list[int]:
    """Frame indices of ``split`` (see the module docstring for the rule)."""
    every = list(range(len(scene)))
    if not scene.has_poses or eval_interval < 1:
        return every
    evaluated = every[::eval_interval]
    if split == "train":
        return [i for i in every if i not in set(evaluated)] if holdout_eval else every
    return evaluated


def default_intrinsics(image_sizes: np.ndarray, focal_factor: float) -> np.ndarray:
    """[N, 3, 3] pinhole K for images of unknown calibration: f = factor * max(h, w), centred."""
    height, width = image_sizes[:, 0].astype(np.float64), image_sizes[:, 1].astype(np.float64)
    intrinsics = np.zeros((len(image_sizes), 3, 3))
    intrinsics[:, 0, 0] = intrinsics[:, 1, 1] = focal_factor * np.maximum(height, width)
    intrinsics[:, 0, 2], intrinsics[:, 1, 2], intrinsics[:, 2, 2] = width / 2, height / 2, 1.0
    return intrinsics


def opencv_cameras(
    c2w: Tensor, intrinsics: Tensor, height: Union[int, Tensor], width: Union[int, Tensor]
) -> Cameras:
    """nerfstudio pinhole ``Cameras`` (OpenGL camera-to-world) of OpenCV poses ``[n, 4, 4]`` and ``[n, 3, 3]`` K;
    ``height`` and ``width`` are shared ints or per-camera ``[n, 1]`` tensors."""
    K = intrinsics.float()
    return Cameras(
        camera_to_worlds=opencv_to_opengl_c2w(c2w.float())[:, :3, :4],
        fx=K[:, 0, 0:1],
        fy=K[:, 1, 1:2],
        cx=K[:, 0, 2:3],
        cy=K[:, 1, 2:3],
        width=width,
        height=height,
        camera_type=CameraType.PERSPECTIVE,
    )


def scene_cameras(scene: SceneData, focal_factor: float) -> Cameras:
    """nerfstudio ``Cameras`` of every frame of ``scene`` (OpenGL poses, identity when unposed)."""
    n = len(scene)
    K = scene.intrinsics if scene.intrinsics is not None else default_intrinsics(scene.image_sizes, focal_factor)
    if scene.has_poses:
        c2w = torch.from_numpy(scene.camera_to_worlds)
    else:
        # The OpenCV pose whose OpenGL form is the identity (the flip is its own inverse).
        c2w = opencv_to_opengl_c2w(torch.eye(4)).expand(n, 4, 4)
    sizes = torch.from_numpy(scene.image_sizes).to(torch.int32)
    return opencv_cameras(c2w, torch.from_numpy(K), sizes[:, 0:1], sizes[:, 1:2])


def _scene_box(scene: SceneData) -> SceneBox:
    """Box around the camera centres padded by half its largest side; [-1, 1]^3 when unposed."""
    if not scene.has_poses:
        return SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    centres = torch.from_numpy(scene.camera_to_worlds[:, :3, 3]).float()
    low, high = centres.min(dim=0).values, centres.max(dim=0).values
    pad = max(float((high - low).max()) / 2, 1e-3)
    return SceneBox(aabb=torch.stack([low - pad, high + pad]))


@dataclass
class FF3RDataParserConfig(DataParserConfig):
    """Options shared by every FF3R dataparser."""

    _target: Type = field(default_factory=lambda: FF3RDataParser)
    data: Path = Path()
    """The scene to read."""
    eval_interval: int = 8
    """On posed scenes, every eval_interval-th frame (0, 8, 16, ...) forms the val/test split; 0: all frames."""
    holdout_eval: bool = False
    """Leave the val/test frames out of the train split (novel-view evaluation); by default train has all frames."""
    default_focal_factor: float = 1.2
    """Focal length, in units of the longer image side, for sources without intrinsics (COLMAP's prior, ~45 deg)."""
    verify_images: bool = True
    """Decode every image once to find truncated files (they are skipped with a warning)."""


class FF3RDataParser(DataParser):
    """Reads the scene(s) once, then serves any split of the first scene."""

    config: FF3RDataParserConfig

    def __init__(self, config: FF3RDataParserConfig):
        super().__init__(config)
        self._scenes: Optional[list[SceneData]] = None

    def read(self) -> list[SceneData]:
        """The scenes of ``config.data`` (one, except for the multi-scene parser)."""
        raise NotImplementedError

    @property
    def scenes(self) -> list[SceneData]:
        if self._scenes is None:
            self._scenes = self.read()
        return self._scenes

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        full = self.scenes[0]
        scene = full.subset(split_indices(full, split, self.config.eval_interval, self.config.holdout_eval))
        return DataparserOutputs(
            image_filenames=list(scene.image_paths),
            cameras=scene_cameras(scene, self.config.default_focal_factor),
            scene_box=_scene_box(full),
            metadata={
                "scene": scene,
                "has_poses": scene.has_poses,
                "has_intrinsics": scene.intrinsics is not None,
                "depth_filenames": scene.depth_paths,
                "depth_unit_scale_factor": scene.depth_scale,
                "label_filenames": scene.label_paths,
                "feature_filenames": scene.feature_paths,
                **self._extra_metadata(),
            },
        )

    def _extra_metadata(self) -> dict:
        return {}


@dataclass
class FF3RImagesDataParserConfig(FF3RDataParserConfig):
    """A folder of unposed images (jpg/png/webp, any sizes), or its images/ subfolder."""

    _target: Type = field(default_factory=lambda: FF3RImagesDataParser)
    data: Path = Path()
    """Folder holding the images (directly or in images/); they are taken in natural file-name order."""


class FF3RImagesDataParser(FF3RDataParser):
    def read(self) -> list[SceneData]:
        return [read_image_folder(self.config.data, verify=self.config.verify_images)]


@dataclass
class FF3RVideoDataParserConfig(FF3RDataParserConfig):
    """A video file, cut into frames once (cached as JPEGs)."""

    _target: Type = field(default_factory=lambda: FF3RVideoDataParser)
    data: Path = Path()
    """The video file (mp4, mov, avi, mkv, webm, ...)."""
    stride: Optional[int] = None
    """Keep every stride-th frame; give this or num_frames."""
    num_frames: Optional[int] = None
    """Keep this many frames spread evenly over the video (32 when neither this nor stride is given)."""
    frames_dir: Optional[Path] = None
    """Folder for the extracted frames; default <video name>_frames/<setting>/ beside the video."""


class FF3RVideoDataParser(FF3RDataParser):
    config: FF3RVideoDataParserConfig

    def read(self) -> list[SceneData]:
        c = self.config
        return [read_video(c.data, output_dir=c.frames_dir, stride=c.stride, num_frames=c.num_frames)]


@dataclass
class FF3RNerfstudioDataParserConfig(FF3RDataParserConfig):
    """A nerfstudio scene: transforms.json with poses and intrinsics (optional depth, labels, features)."""

    _target: Type = field(default_factory=lambda: FF3RNerfstudioDataParser)
    data: Path = Path()
    """The scene folder holding transforms.json, or the json file itself."""


class FF3RNerfstudioDataParser(FF3RDataParser):
    def read(self) -> list[SceneData]:
        return [read_nerfstudio(self.config.data, verify=self.config.verify_images)]


@dataclass
class FF3RColmapDataParserConfig(FF3RDataParserConfig):
    """A COLMAP sparse model (text or binary) and its images."""

    _target: Type = field(default_factory=lambda: FF3RColmapDataParser)
    data: Path = Path()
    """The scene folder (with sparse/0, sparse or reconstruction), or the model folder itself."""
    images_path: Optional[Path] = None
    """The image folder (absolute, or relative to data); default images/ beside the model or above it."""


class FF3RColmapDataParser(FF3RDataParser):
    config: FF3RColmapDataParserConfig

    def read(self) -> list[SceneData]:
        images = self.config.images_path
        if images is not None and not images.is_absolute():
            images = self.config.data / images
        return [read_colmap(self.config.data, images_dir=images, verify=self.config.verify_images)]


@dataclass
class FF3RSevenScenesDataParserConfig(FF3RDataParserConfig):
    """A Microsoft 7-Scenes scene: seq-XX/frame-XXXXXX.{color.png, depth.png, pose.txt}, metric depth."""

    _target: Type = field(default_factory=lambda: FF3RSevenScenesDataParser)
    data: Path = Path()
    """The scene folder holding the seq-XX folders (e.g. .../stairs), or one sequence folder."""
    sequences: Tuple[str, ...] = ()
    """Sequences to read, in order: names or numbers (seq-01 3), or train / test (TrainSplit.txt / TestSplit.txt).
    Empty: all."""


class FF3RSevenScenesDataParser(FF3RDataParser):
    config: FF3RSevenScenesDataParserConfig

    def read(self) -> list[SceneData]:
        sequences = self.config.sequences
        if len(sequences) == 1 and sequences[0] in ("train", "test"):
            sequences = sequences[0]
        return [read_7scenes(self.config.data, sequences=sequences or None, verify=self.config.verify_images)]


@dataclass
class FF3RScanNetDataParserConfig(FF3RDataParserConfig):
    """A ScanNet scene as SensReader exports it (color/, depth/, pose/, intrinsic/), with label-filt/ labels."""

    _target: Type = field(default_factory=lambda: FF3RScanNetDataParser)
    data: Path = Path()
    """The scene folder (e.g. .../scans/scene0000_00)."""
    labels_tsv: Optional[Path] = None
    """scannetv2-labels.combined.tsv (raw category id -> NYU40 id); default: found in the scene folder or up
    to three folders above it. Needed only when the scene has label-filt/."""


class FF3RScanNetDataParser(FF3RDataParser):
    config: FF3RScanNetDataParserConfig

    def read(self) -> list[SceneData]:
        return [read_scannet(self.config.data, labels_tsv=self.config.labels_tsv, verify=self.config.verify_images)]


@dataclass
class FF3RScanNetppDataParserConfig(FF3RDataParserConfig):
    """A ScanNet++ DSLR scene, undistorted by the ScanNet++ toolkit (dslr/nerfstudio/transforms_undistorted.json)."""

    _target: Type = field(default_factory=lambda: FF3RScanNetppDataParser)
    data: Path = Path()
    """The scene folder (holding dslr/), or its dslr/ folder."""


class FF3RScanNetppDataParser(FF3RDataParser):
    def read(self) -> list[SceneData]:
        return [read_scannetpp(self.config.data, verify=self.config.verify_images)]


@dataclass
class FF3RMultiSceneDataParserConfig(FF3RDataParserConfig):
    """A folder of many scenes of any kind above (e.g. DL3DV-10K: <scene>/images_4 + transforms.json)."""

    _target: Type = field(default_factory=lambda: FF3RMultiSceneDataParser)
    data: Path = Path()
    """The root folder; scenes are searched for below it (folders that are not scenes are reported)."""
    max_depth: int = 2
    """How many folder levels below data to search for scenes."""


class FF3RMultiSceneDataParser(FF3RDataParser):
    """Outputs the first scene's cameras; ``metadata["scenes"]`` holds every scene for the datamanager."""

    config: FF3RMultiSceneDataParserConfig

    def read(self) -> list[SceneData]:
        return read_scenes(self.config.data, max_depth=self.config.max_depth, verify=self.config.verify_images)

    def _extra_metadata(self) -> dict:
        return {"scenes": self.scenes}


images_dataparser = DataParserSpecification(
    config=FF3RImagesDataParserConfig(), description="FF3R: a folder of unposed images"
)
video_dataparser = DataParserSpecification(
    config=FF3RVideoDataParserConfig(), description="FF3R: frames of a video file"
)
nerfstudio_dataparser = DataParserSpecification(
    config=FF3RNerfstudioDataParserConfig(), description="FF3R: a nerfstudio transforms.json scene"
)
colmap_dataparser = DataParserSpecification(
    config=FF3RColmapDataParserConfig(), description="FF3R: a COLMAP model (text or binary) and its images"
)
sevenscenes_dataparser = DataParserSpecification(
    config=FF3RSevenScenesDataParserConfig(), description="FF3R: a 7-Scenes RGB-D scene"
)
scannet_dataparser = DataParserSpecification(
    config=FF3RScanNetDataParserConfig(), description="FF3R: a ScanNet RGB-D scene with 2D labels"
)
scannetpp_dataparser = DataParserSpecification(
    config=FF3RScanNetppDataParserConfig(), description="FF3R: a ScanNet++ DSLR scene (undistorted)"
)
multiscene_dataparser = DataParserSpecification(
    config=FF3RMultiSceneDataParserConfig(), description="FF3R: a folder of many scenes (training)"
)
