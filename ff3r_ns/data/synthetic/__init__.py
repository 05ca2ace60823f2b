"""Procedural indoor rooms with ground truth: images, depth, poses, class labels and a stand-in teacher.

A room is a closed box (floor, four walls, ceiling) furnished with chairs, tables, sofas, beds and
"other" things (shelves with books, cabinets, lamps, plants, a TV, pictures, a door, a rug, ceiling
lights), each built from textured boxes and vertical cylinders. Views are rendered by ray casting in
torch (all pixels of a view at once, CPU, float32) along a smooth camera path, with Lambertian
shading from ceiling lights (shadows included), a hemispherical ambient term and a cheap ambient-occlusion
darkening near the floor, in room corners and around furniture footprints. A room is filmed like a handheld
video (``RoomConfig.trajectory = "video"``, the default: a walk-through or a partial orbit around a piece of
furniture, a few centimetres and degrees a frame) or along the closed loop around the room (``"loop"``,
neighbouring views far apart); see :mod:`.trajectory`.

One idea a module: :mod:`.config` (:class:`RoomConfig`), :mod:`.room` (what a room is made of),
:mod:`.furniture` (the pieces), :mod:`.layout` (:func:`generate_room`), :mod:`.trajectory`
(:func:`make_cameras`), :mod:`.raytrace`, :mod:`.shading` (textures and lights), :mod:`.render`
(:func:`render_views`), :mod:`.teacher` (the stand-in LSeg and :func:`class_embeddings`) and
:mod:`.writer` (:func:`write_scene`).

Conventions
-----------
- World: metres, z up; the room spans ``x in [-W/2, W/2]``, ``y in [-D/2, D/2]``, ``z in [0, H]``.
- In memory, poses are OpenCV camera-to-world (``ff3r_ns.data.scene``); ``transforms.json`` stores the
  nerfstudio/OpenGL ones (camera y and z negated). Pixel centres are at ``(u + 0.5, v + 0.5)`` and the
  principal point is the image centre ``(W / 2, H / 2)`` (``ff3r_ns.network.cameras``).
- Depth is z-depth along the optical axis. Every ray hits the closed room, so 0 never occurs in practice.
- Class ids: 0 nothing, then 1..8 = ``CLASS_NAMES`` (wall, floor, ceiling, chair, table, sofa, bed,
  other), the evaluation classes of the paper. Pictures, doors, rugs, books, lamps, pillows of the
  ``other`` furniture are ``other``; pillows and blankets of a bed are ``bed``.

Scene folder written by :func:`write_scene` (a nerfstudio scene)
----------------------------------------------------------------
``transforms.json``: ``camera_model "OPENCV"`` (zero distortion), ``fl_x fl_y cx cy w h``,
``depth_unit_scale_factor 0.001``, ``ff3r_synthetic {seed, classes, version, config}`` (``version``
:data:`FORMAT_VERSION`, 2; ``config`` is the :class:`RoomConfig` that regenerates the scene), and per frame ``file_path``
(``images/frame_00000.png``, RGB 8-bit), ``transform_matrix`` (OpenGL camera-to-world),
``depth_file_path`` (``depth/frame_00000.png``, uint16 millimetres, 0 = no hit),
``semantic_file_path`` (``labels/frame_00000.png``, uint8 class ids) and ``feature_file_path``
(``features/frame_00000.npz``, the factored stand-in teacher record of :mod:`.teacher`). Files are
bit-identical for the same config.
"""

from ff3r_ns.data.classes import BED, CEILING, CHAIR, CLASS_NAMES, FLOOR, OTHER, SOFA, TABLE, WALL
from ff3r_ns.data.synthetic.config import FORMAT_VERSION, RoomConfig
from ff3r_ns.data.synthetic.layout import generate_room
from ff3r_ns.data.synthetic.render import render_views
from ff3r_ns.data.synthetic.room import MATERIAL_KINDS, CameraPath, Material, Primitive, Room
from ff3r_ns.data.synthetic.teacher import (
    FEATURE_DIM,
    class_embeddings,
    load_teacher_features,
    teacher_features,
    teacher_view,
)
from ff3r_ns.data.synthetic.trajectory import ViewCameras, make_cameras
from ff3r_ns.data.synthetic.writer import write_scene, write_scenes

__all__ = [
    "BED",
    "CEILING",
    "CHAIR",
    "CLASS_NAMES",
    "FEATURE_DIM",
    "FLOOR",
    "FORMAT_VERSION",
    "MATERIAL_KINDS",
    "OTHER",
    "SOFA",
    "TABLE",
    "WALL",
    "CameraPath",
    "Material",
    "Primitive",
    "Room",
    "RoomConfig",
    "ViewCameras",
    "class_embeddings",
    "generate_room",
    "load_teacher_features",
    "make_cameras",
    "render_views",
    "teacher_features",
    "teacher_view",
    "write_scene",
    "write_scenes",
]
