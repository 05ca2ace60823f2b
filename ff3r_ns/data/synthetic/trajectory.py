"""Cameras of a room's views: the closed loop or a video-like capture, and the pinhole intrinsics.

``config.trajectory`` picks how a room is filmed:

- ``"loop"``: the views evenly spaced on the room's closed ellipse (:class:`~.room.CameraPath`), looking
  inward across the room; neighbours are ``360 / num_views`` degrees apart.
- ``"video"``: a handheld capture at about 30 frames a second, a *walk-through* (a smoothed random walk
  between free spots of the floor, looking ahead where it goes) or, with ``config.orbit_probability``, a
  *partial orbit* around a piece of furniture (looking at it). The walker's speed is drawn per room from
  ``config.camera_speed``, varies slowly, drops in turns (to turn by at most 2 degrees a frame) and stops now and
  then (pauses of 8-20 frames); a head bob (one cycle a step, about 1.5 cm),
  a sideways sway (one cycle every two steps) with a little roll, and a slowly wandering gaze come on
  top. Every camera keeps ``config.camera_clearance`` horizontally from the walls and from every piece of
  furniture (:func:`horizontal_clearance`), and a walking camera has at least ``_MIN_FREE_VIEW`` metres
  of free floor plan in front of it, so it never stares into a wall.

The field of view is drawn per room from ``config.fov_deg`` (one number: fixed). Random draws come from
``numpy.random.default_rng([seed, 1, attempt])``, apart from the layout's ``[seed, 0, attempt]``: the same
seed gives the same room with either trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ff3r_ns.data.synthetic.config import RoomConfig
from ff3r_ns.data.synthetic.room import Room, distance_to_primitive

MAX_STEP_TRANSLATION = 0.06
"""Metres: a video camera never moves farther between consecutive frames (checked; attempts are redrawn)."""
MAX_STEP_ROTATION_DEG = 5.0
"""Degrees: a video camera never turns more between consecutive frames (checked; attempts are redrawn)."""
_OBSTACLE_Z = (0.05, 2.0)  # a primitive blocks the walker if it reaches above 5 cm and below 2 m (not rugs, lamps)
_MIN_FREE_VIEW = 1.0  # metres of free floor plan ahead of a walking camera along its gaze
_PATH_SMOOTHING = 0.4  # metres: Gaussian std of the walk's smoothing along its length
_LOOK_AHEAD = 0.4  # metres: a walker looks where the path goes this far ahead
_ATTEMPTS = 40
_TURN_RATE = math.radians(2.0)  # a walker slows down in turns to turn by at most this a frame
_MAX_TURN_COSINE = (-0.2, -0.6)  # a walk turns by at most 100 degrees at a waypoint, 127 where stuck: no U-turns


@dataclass
class ViewCameras:
    """Pinhole cameras of the views: OpenCV camera-to-world poses and one shared intrinsic matrix."""

    camera_to_worlds: np.ndarray
    """[N, 4, 4] float64 OpenCV camera-to-world."""
    intrinsics: np.ndarray
    """[3, 3] float64 pinhole intrinsics in pixels."""
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.camera_to_worlds)


def make_cameras(room: Room, config: RoomConfig) -> ViewCameras:
    """The ``config.num_views`` cameras of the room along ``config.trajectory`` (module docstring)."""
    rng = np.random.default_rng([config.seed, 1, 0])
    fov_lo, fov_hi = config.fov_deg
    fov = fov_lo if fov_lo == fov_hi else float(rng.uniform(fov_lo, fov_hi))
    if config.trajectory == "loop":
        c2w = _loop_poses(room, config.num_views)
    else:
        c2w = _video_poses(room, config)
    size = config.image_size
    focal = size / 2 / math.tan(math.radians(fov) / 2)
    intrinsics = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return ViewCameras(c2w, intrinsics, size, size)


def _loop_poses(room: Room, num_views: int) -> np.ndarray:
    """``num_views`` cameras evenly spaced along the room's closed path, looking into the room."""
    t = np.arange(num_views) / num_views
    centres, targets = room.camera_path.centres_and_targets(t)
    forward = targets - centres
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    c2w = np.zeros((num_views, 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3], c2w[:, 3, 3] = right, down, forward, centres, 1.0
    return c2w


def horizontal_clearance(room: Room, xy: np.ndarray) -> np.ndarray:
    """Horizontal distance ``[n]`` from floor-plan points ``[n, 2]`` to the nearest wall or obstacle.

    Obstacles are the primitives a walker could bump into (reaching above 5 cm and below 2 m: not rugs
    or ceiling lights), measured as vertical prisms; negative outside the room, 0 inside an obstacle.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    W, D, _ = room.size
    clearance = np.minimum(W / 2 - np.abs(xy[:, 0]), D / 2 - np.abs(xy[:, 1]))
    for prim in room.primitives:
        z, half_z = prim.center[2], prim.half_size[2]
        if z + half_z < _OBSTACLE_Z[0] or z - half_z > _OBSTACLE_Z[1]:
            continue
        points = np.column_stack([xy, np.full(len(xy), z)])  # at the primitive's own height: horizontal distance
        clearance = np.minimum(clearance, distance_to_primitive(points, prim))
    return clearance


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``[m]`` or ``[m, k]`` along its first axis, edges replicated, ``sigma`` in samples."""
    radius = max(1, int(math.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    columns = x.reshape(len(x), -1)
    padded = np.concatenate([np.repeat(columns[:1], radius, 0), columns, np.repeat(columns[-1:], radius, 0)])
    smooth = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(columns.shape[1])], -1)
    return smooth.reshape(x.shape)


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """``[n]`` smooth Gaussian noise of unit std, correlated over about ``sigma`` frames."""
    radius = max(1, int(math.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    white = rng.standard_normal(n + 2 * radius)
    return np.convolve(white, kernel / np.sqrt((kernel**2).sum()), mode="valid")


def _speed_profile(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-frame factors ``[n]`` of the room's speed before turns: slow variations and pauses (about 0)."""
    factor = np.clip(1.0 + 0.15 * _smooth_noise(rng, n, 12.0), 0.7, 1.25)
    standing = np.zeros(n)
    for _ in range(int(rng.integers(0, 2 + n // 64))):  # about one pause a 64 frames
        length, start = int(rng.integers(8, 21)), int(rng.integers(0, n))
        ramp = 6  # frames to stop and to start again
        t = np.arange(n) - start
        up = np.clip((t + ramp) / ramp, 0, 1) * np.clip((length + ramp - t) / ramp, 0, 1)
        standing = np.maximum(standing, 0.5 - 0.5 * np.cos(np.pi * up))
    return factor * (1.0 - 0.95 * standing)


def _walk_path(room: Room, config: RoomConfig, rng: np.random.Generator, length: float) -> np.ndarray | None:
    """A random walk ``[m, 2]`` (points 2 cm apart) through free space, smoothed, at least ``length`` long."""
    W, D, _ = room.size
    need = config.camera_clearance + 0.1  # room for the smoothing and the sway

    def free_points(count: int) -> np.ndarray:
        xy = rng.uniform((-W / 2, -D / 2), (W / 2, D / 2), (count, 2))
        return xy[horizontal_clearance(room, xy) > need]

    start = free_points(200)
    if len(start) == 0:
        return None
    points, heading, total = [start[0]], None, 0.0
    while total < length + 2 * _PATH_SMOOTHING + _LOOK_AHEAD:
        here = points[-1]
        for round_ in range(4):  # a few draws of candidates, sharper turns allowed late, before giving up
            candidates = free_points(100)
            step = candidates - here
            distance = np.linalg.norm(step, axis=1)
            turn = np.ones(len(candidates)) if heading is None else (step @ heading) / np.maximum(distance, 1e-9)
            keep = (distance > 0.6) & (distance < 3.0) & (turn > _MAX_TURN_COSINE[round_ // 2])
            ok = [
                bool(np.all(horizontal_clearance(room, here + s * (c - here)) > need))
                for c, d in zip(candidates[keep], distance[keep])
                for s in [np.linspace(0.0, 1.0, max(2, int(d / 0.05)))[:, None]]
            ]
            if any(ok):
                break
        else:
            return None
        candidates, step, distance, turn = candidates[keep], step[keep], distance[keep], turn[keep]
        weights = np.where(ok, distance * np.exp(4.0 * turn), 0.0)  # prefer long straight stretches
        pick = int(rng.choice(len(candidates), p=weights / weights.sum()))
        points.append(candidates[pick])
        heading = step[pick] / distance[pick]
        total += distance[pick]
    dense = [points[0]]
    for a, b in zip(points[:-1], points[1:]):
        count = max(1, int(np.ceil(np.linalg.norm(b - a) / 0.02)))
        dense.extend(a + (b - a) * (np.arange(1, count + 1) / count)[:, None])
    return _smooth(np.asarray(dense), _PATH_SMOOTHING / 0.02)


@dataclass
class _Plan:
    """A camera path on the floor plan, before the handheld motion is added."""

    xy: np.ndarray  # [n, 2] camera centres
    yaw: np.ndarray  # [n] gaze direction on the floor plan, radians
    travelled: np.ndarray  # [n] metres walked at each frame (the phase of the steps)
    walking: np.ndarray  # [n] in [0, 1]: 0 while standing (no head bob)
    look_at: tuple[float, float] | None  # orbit: (distance, height) of the point looked at; walk: None


def _walk_through(room: Room, config: RoomConfig, rng: np.random.Generator) -> _Plan | None:
    """A walk through the free space of the room, looking ahead, or None where none was found."""
    n = config.num_views
    speed = float(rng.uniform(*config.camera_speed))
    factor = _speed_profile(rng, n)
    path = _walk_path(room, config, rng, n * speed * factor.max())
    if path is None:
        return None
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    tangent = np.gradient(path, arc, axis=0)
    heading = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))
    curvature = np.abs(np.gradient(heading, arc))
    ahead = int(round(_LOOK_AHEAD / 0.02))  # the gaze turns as soon as the path ahead does: slow down for it
    curvature = np.max([np.roll(np.pad(curvature, (0, ahead), mode="edge"), -k)[: len(arc)] for k in range(ahead + 1)], 0)
    s = np.empty(n)
    s[0] = 2 * _PATH_SMOOTHING  # start past the smoothed path's replicated end
    for i in range(1, n):
        turn_limit = _TURN_RATE / max(np.interp(s[i - 1], arc, curvature), 1e-6)
        s[i] = s[i - 1] + min(speed * factor[i - 1], config.camera_speed[1], turn_limit)
    xy = np.stack([np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])], -1)
    yaw = _smooth(np.interp(s + _LOOK_AHEAD, arc, heading), 3.0)
    yaw = yaw + np.radians(10.0) * _smooth_noise(rng, n, 20.0)  # the head looks around a little
    return _Plan(xy, yaw, s, np.clip(factor, 0.0, 1.0), None)


def _orbit(room: Room, config: RoomConfig, rng: np.random.Generator) -> _Plan | None:
    """A partial orbit around a random piece of furniture, looking at it; None where none fits."""
    n = config.num_views
    speed = float(rng.uniform(*config.camera_speed))
    factor = _speed_profile(rng, n)
    need = config.camera_clearance + 0.05
    for k in rng.permutation(len(room.footprints)):
        cx, cy, hx, hy, _ = room.footprints[k]
        radius = max(hx, hy) + float(rng.uniform(0.6, 1.4))
        angles = np.radians(np.arange(360.0))
        ring = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], -1)
        free = horizontal_clearance(room, ring) > need
        if free.all() or not free.any():
            continue  # all free: a full circle is a loop, not a partial orbit; none: try another piece
        first = int(np.argmin(free))  # a blocked angle: runs of free angles start after it
        rolled = np.roll(free, -first)
        runs, begin = [], None
        for a, f in enumerate(np.append(rolled, False)):
            if f and begin is None:
                begin = a
            elif not f and begin is not None:
                runs.append((begin + first, a - begin))
                begin = None
        begin, span = max(runs, key=lambda r: r[1])
        span_rad = np.radians(span - 2)  # a degree off each blocked end
        travel = np.cumsum(np.minimum(speed * factor, config.camera_speed[1]))
        scale = min(1.0, span_rad * radius / travel[-1])
        if span < 45 or speed * scale < 0.4 * config.camera_speed[0]:
            continue
        swept = (travel - travel[0]) * scale / radius
        theta0 = np.radians(begin + 1) + float(rng.uniform(0, span_rad - swept[-1]))
        theta = theta0 + swept if rng.random() < 0.5 else theta0 + swept[-1] - swept  # either way round
        xy = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], -1)
        look = np.array([cx, cy]) - xy
        yaw = np.unwrap(np.arctan2(look[:, 1], look[:, 0]))
        yaw = yaw + np.radians(6.0) * _smooth_noise(rng, n, 20.0)
        look_at = (radius, float(rng.uniform(0.4, 0.9)))
        return _Plan(xy, yaw, travel * scale, np.clip(factor, 0.0, 1.0), look_at)
    return None


def _video_poses(room: Room, config: RoomConfig) -> np.ndarray:
    """Camera-to-worlds ``[n, 4, 4]`` of a video capture of the room (module docstring)."""
    if room.video_plan is not None and room.video_plan[0] == config:  # planned when the layout was accepted
        return room.video_plan[1].copy()
    c2w = plan_video(room, config)
    if c2w is None:
        raise RuntimeError(
            f"could not plan a video path for seed {config.seed} that keeps {config.camera_clearance} m from walls "
            "and furniture; lower camera_clearance, furnish less (num_* ranges) or use trajectory='loop'"
        )
    return c2w


def plan_video(room: Room, config: RoomConfig) -> Optional[np.ndarray]:
    """:func:`_video_poses`'s cameras, or None where no drawn walk-through or orbit keeps its clearance."""
    choose = np.random.default_rng([config.seed, 1, 1])
    planners = (_orbit, _walk_through) if choose.random() < config.orbit_probability else (_walk_through, _orbit)
    for attempt in range(_ATTEMPTS):  # the drawn kind of video first, the other one where it does not fit
        rng = np.random.default_rng([config.seed, 1, 2 + attempt])
        plan = planners[attempt * len(planners) // _ATTEMPTS](room, config, rng)
        if plan is None:
            continue
        c2w = _handheld(rng, config, plan)
        if _acceptable(room, config, c2w, look_ahead=plan.look_at is None):
            return c2w
    return None


def _handheld(rng: np.random.Generator, config: RoomConfig, plan: _Plan) -> np.ndarray:
    """Poses ``[n, 4, 4]`` of a plan with a drawn eye height and pitch, head bob, sway and roll added."""
    n, yaw = len(plan.xy), plan.yaw
    step_length = float(rng.uniform(0.6, 0.75))  # metres a step: one bob cycle
    phase = 2 * np.pi * plan.travelled / step_length
    bob = float(rng.uniform(0.008, 0.018)) * plan.walking * np.sin(phase)
    sway = float(rng.uniform(0.005, 0.012)) * plan.walking * np.sin(phase / 2)
    eye = float(rng.uniform(*config.camera_height))
    height = eye + 0.03 * _smooth_noise(rng, n, 30.0) + bob
    if plan.look_at is None:
        base_pitch = float(rng.uniform(-22.0, -8.0))  # walking: a little below the horizon
    else:
        distance, target_height = plan.look_at
        base_pitch = float(np.clip(-math.degrees(math.atan2(eye - target_height, distance)), -40.0, -5.0))
    pitch = np.radians(base_pitch + 3.0 * _smooth_noise(rng, n, 25.0)) + 0.004 * plan.walking * np.cos(phase)
    roll = np.radians(1.0) * plan.walking * np.sin(phase / 2) + np.radians(1.5) * _smooth_noise(rng, n, 30.0)
    side = np.stack([-np.sin(yaw), np.cos(yaw)], -1)
    centres = np.column_stack([plan.xy + sway[:, None] * side, height])
    forward = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right, down = c * right + s * down, c * down - s * right
    c2w = np.zeros((n, 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3], c2w[:, 3, 3] = right, down, forward, centres, 1.0
    return c2w


def step_motion(c2w: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Translation (metres) and rotation angle (degrees) ``[n - k]`` between views ``k`` frames apart."""
    translation = np.linalg.norm(c2w[k:, :3, 3] - c2w[:-k, :3, 3], axis=1)
    relative = np.einsum("nji,njk->nik", c2w[:-k, :3, :3], c2w[k:, :3, :3])
    cosine = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return translation, np.degrees(np.arccos(cosine))


def _acceptable(room: Room, config: RoomConfig, c2w: np.ndarray, look_ahead: bool) -> bool:
    """Clear of walls and furniture, smooth enough and (``look_ahead``) with free space ahead of every camera."""
    centres = c2w[:, :3, 3]
    if np.any(horizontal_clearance(room, centres[:, :2]) < config.camera_clearance):
        return False
    if len(c2w) > 1:
        translation, rotation = step_motion(c2w)
        if translation.max() > MAX_STEP_TRANSLATION or rotation.max() > MAX_STEP_ROTATION_DEG:
            return False
    if look_ahead:
        gaze = c2w[:, :2, 2] / np.linalg.norm(c2w[:, :2, 2], axis=1, keepdims=True)
        ahead = np.linspace(0.05, _MIN_FREE_VIEW, 20)
        points = centres[:, None, :2] + ahead[None, :, None] * gaze[:, None, :]
        if np.any(horizontal_clearance(room, points.reshape(-1, 2)) <= 0.0):
            return False
    return True
