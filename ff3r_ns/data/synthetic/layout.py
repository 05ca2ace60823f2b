"""Room layout: the shell, then furniture placed without overlaps in a fixed order, lights and the camera loop."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ff3r_ns.data.classes import OTHER
from ff3r_ns.data.synthetic.config import RoomConfig
from ff3r_ns.data.synthetic.furniture import FABRICS, WALL_PAINTS, WOODS, FurnitureBuilder, Part, Piece
from ff3r_ns.data.synthetic.room import CAMERA_CLEARANCE, CameraPath, Primitive, Room, distance_to_primitive


def _yaw_facing(wall: int) -> float:
    """Yaw that puts an object's back (-y) against wall 0..3 (x = -W/2, x = +W/2, y = -D/2, y = +D/2)."""
    return (-math.pi / 2, math.pi / 2, 0.0, math.pi)[wall]


class _Layout:
    """Non-overlapping placement of pieces on the floor (rotated footprints, as AABBs)."""

    def __init__(self, rng: np.random.Generator, width: float, depth: float) -> None:
        self.rng, self.W, self.D = rng, width, depth
        self.boxes: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1

    @staticmethod
    def aabb(x, y, hx, hy, yaw):
        c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
        ex, ey = c * hx + s * hy, s * hx + c * hy
        return x - ex, y - ey, x + ex, y + ey

    def free(self, box, margin: float = 0.0) -> bool:
        """Whether ``box`` lies in the room and stays ``margin`` away from every placed footprint."""
        x0, y0, x1, y1 = box
        if x0 < -self.W / 2 - 1e-6 or x1 > self.W / 2 + 1e-6 or y0 < -self.D / 2 - 1e-6 or y1 > self.D / 2 + 1e-6:
            return False
        x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
        return all(x1 <= b[0] or b[2] <= x0 or y1 <= b[1] or b[3] <= y0 for b in self.boxes)

    def try_place(self, x, y, hx, hy, yaw, margin=0.05) -> bool:
        box = self.aabb(x, y, hx, hy, yaw)
        if not self.free(box, margin):
            return False
        self.boxes.append(box)
        return True

    def against_wall(self, hx, hy, gap=0.02, walls=(0, 1, 2, 3), tries=40, along=None):
        """Place a footprint with its back against one of ``walls``; returns (x, y, yaw, wall) or None."""
        rng = self.rng
        for _ in range(tries):
            wall = int(rng.choice(walls))
            yaw = _yaw_facing(wall)
            length = self.D if wall < 2 else self.W
            room_half = self.W / 2 if wall < 2 else self.D / 2
            if 2 * hx + 0.1 > length:
                continue
            t = rng.uniform(-length / 2 + hx + 0.05, length / 2 - hx - 0.05) if along is None else along(length, hx)
            n = -room_half + hy + gap  # distance along the wall normal, from the centre
            x, y = ((n if wall == 0 else -n), t) if wall < 2 else (t, (n if wall == 2 else -n))
            if self.try_place(x, y, hx, hy, yaw):
                return x, y, yaw, wall
        return None

    def anywhere(self, hx, hy, yaw, wall_margin, tries=60):
        rng = self.rng
        x0, y0, x1, y1 = self.aabb(0, 0, hx, hy, yaw)
        lo_x, hi_x = -self.W / 2 + wall_margin - x0, self.W / 2 - wall_margin - x1
        lo_y, hi_y = -self.D / 2 + wall_margin - y0, self.D / 2 - wall_margin - y1
        if lo_x > hi_x or lo_y > hi_y:
            return None
        for _ in range(tries):
            x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
            if self.try_place(x, y, hx, hy, yaw, margin=0.1):
                return x, y
        return None


def _place(piece: Piece, x: float, y: float, yaw: float, group: int) -> list[Primitive]:
    c, s = math.cos(yaw), math.sin(yaw)
    return [
        Primitive(
            p.kind,
            (x + c * p.center[0] - s * p.center[1], y + s * p.center[0] + c * p.center[1], p.center[2]),
            tuple(float(v) for v in p.half),
            yaw,
            p.material,
            p.label,
            group,
        )
        for p in piece.parts
    ]


def generate_room(config: RoomConfig) -> Room:
    """A random furnished room for ``config.seed`` (layout retried until the camera path is clear: the loop's,
    and for a video room a walk-through or orbit that keeps its clearance)."""
    from ff3r_ns.data.synthetic.trajectory import plan_video  # trajectory plans inside rooms made here

    for attempt in range(20):
        room = _generate_room(config, np.random.default_rng([config.seed, 0, attempt]))
        centres, _ = room.camera_path.centres_and_targets(np.linspace(0.0, 1.0, 256, endpoint=False))
        if not all(distance_to_primitive(centres, p).min() > CAMERA_CLEARANCE for p in room.primitives):
            continue
        if config.trajectory == "video":
            # About one seed in 250 is furnished so that no video path fits (seed 239 at 64 frames): draw again.
            c2w = plan_video(room, config)
            if c2w is None:
                continue
            room.video_plan = (config, c2w)
        return room
    raise RuntimeError(
        f"could not lay out seed {config.seed} with a clear camera path; raise camera_wall_margin or room sizes"
    )


def _generate_room(config: RoomConfig, rng: np.random.Generator) -> Room:
    size = tuple(float(rng.uniform(*r)) for r in (config.room_width, config.room_depth, config.room_height))
    counts = {
        name: int(rng.integers(lo, hi + 1))
        for name, (lo, hi) in (
            ("chair", config.num_chairs),
            ("table", config.num_tables),
            ("sofa", config.num_sofas),
            ("bed", config.num_beds),
            ("other", config.num_others),
        )
    }
    maker = _RoomMaker(rng, *size)
    shell = maker.shell()
    maker.door()
    maker.beds(counts["bed"])
    sofas = maker.sofas(counts["sofa"])
    tables = counts["table"] - maker.coffee_tables(sofas, counts["table"])
    chairs = maker.dining_tables(tables, counts["chair"])
    maker.wall_chairs(chairs)
    maker.others(counts["other"])
    maker.rug()
    maker.pictures(int(rng.integers(1, 4)))
    lights = maker.ceiling_lights()
    W, D, _ = size
    rx, ry = max(0.4, W / 2 - config.camera_wall_margin), max(0.4, D / 2 - config.camera_wall_margin)
    h_lo, h_hi = config.camera_height
    path = CameraPath(
        radii=(rx, ry),
        phase=float(rng.uniform(0, 2 * math.pi)),
        direction=float(rng.choice([-1.0, 1.0])),
        height=((h_lo + h_hi) / 2, (h_hi - h_lo) / 2, float(rng.uniform(0, 2 * math.pi))),
        target_scale=float(rng.uniform(0.2, 0.5)),
        target_height=(
            float(rng.uniform(0.85, 1.05)),
            float(rng.uniform(0.3, 0.5)),
            float(rng.uniform(0, 2 * math.pi)),
        ),
        swing=(float(rng.uniform(0.15, 0.45)), float(rng.uniform(0, 2 * math.pi))),
    )
    return Room(size, maker.prims, maker.b.materials, shell, lights, maker.footprints, maker.objects, path, config.seed)


def _local_to_world(x: float, y: float, yaw: float, lx: float, ly: float) -> tuple[float, float]:
    c, s = math.cos(yaw), math.sin(yaw)
    return x + c * lx - s * ly, y + s * lx + c * ly


class _RoomMaker:
    """Furnishes one room, in a fixed order: door, beds, sofas, tables and chairs, others, decor."""

    def __init__(self, rng: np.random.Generator, width: float, depth: float, height: float) -> None:
        self.rng, self.W, self.D, self.H = rng, width, depth, height
        self.b = FurnitureBuilder(rng)
        self.layout = _Layout(rng, width, depth)
        self.prims: list[Primitive] = []
        self.objects: list[str] = []
        self.footprints: list[tuple[float, float, float, float, float]] = []
        self.rug_spot: Optional[tuple[float, float, float, float, float]] = None

    def add(self, piece: Piece, x: float, y: float, yaw: float, floor_standing: bool = True) -> None:
        self.prims.extend(_place(piece, x, y, yaw, len(self.objects)))
        self.objects.append(piece.name)
        if floor_standing:
            self.footprints.append((x, y, piece.half_xy[0], piece.half_xy[1], yaw))

    def shell(self) -> tuple[int, int, int, int, int, int]:
        """Materials of the four walls (one may be an accent wall), the floor and the ceiling."""
        rng, b = self.rng, self.b
        floor_kind = ("planks", "planks", "tiles", "fabric")[int(rng.integers(4))]
        if floor_kind == "planks":
            base = b.jitter(b.pick(WOODS), 0.1)
            floor = b.add(
                "planks",
                base,
                tuple(0.75 * c for c in base),
                scale=float(rng.uniform(5, 8)),
                angle=float(rng.choice([0, math.pi / 2])),
            )
        elif floor_kind == "tiles":
            c1 = b.jitter(b.pick(((0.85, 0.84, 0.80), (0.55, 0.52, 0.50), (0.80, 0.72, 0.62))), 0.08)
            c2 = c1 if rng.random() < 0.5 else tuple(0.7 * c for c in c1)
            floor = b.add("tiles", c1, c2, scale=float(rng.uniform(1.6, 3.5)))
        else:  # carpet
            c1 = b.jitter(b.pick(FABRICS), 0.1)
            floor = b.add("fabric", c1, tuple(0.85 * c for c in c1), scale=float(rng.uniform(6, 12)))
        wall_color = b.jitter(b.pick(WALL_PAINTS), 0.03)
        wall = b.add("plain", wall_color, scale=3.0)
        accent_kind = str(rng.choice(["plain", "stripes", "stripes"]))
        accent = (
            wall
            if rng.random() < 0.4
            else b.add(
                accent_kind,
                b.jitter(b.pick(WALL_PAINTS + FABRICS[:4]), 0.05),
                wall_color,
                scale=float(rng.uniform(3, 8)),
            )
        )
        ceiling = b.add("plain", (0.95, 0.95, 0.94), scale=2.0)
        walls = [wall] * 4
        walls[int(rng.integers(4))] = accent
        return (*walls, floor, ceiling)

    def door(self) -> None:
        """A door on a random wall; its footprint reserves the floor in front of it."""
        rng, b = self.rng, self.b
        wall = int(rng.integers(4))
        length = self.D if wall < 2 else self.W
        along = float(rng.uniform(-length / 2 + 0.7, length / 2 - 0.7))
        panel = b.wood() if rng.random() < 0.5 else b.paint(((0.95, 0.95, 0.93), (0.55, 0.40, 0.30)))
        door = Piece(
            "door",
            [
                Part("box", (0, -0.49, 1.03), (0.45, 0.02, 1.03), panel, OTHER),
                Part("box", (0.36, -0.45, 1.0), (0.05, 0.02, 0.015), b.paint(((0.75, 0.72, 0.60),)), OTHER),
            ],
            (0.45, 0.5),
        )
        spot = self.layout.against_wall(0.45, 0.5, gap=0.0, walls=(wall,), along=lambda length, hx: along)
        if spot is not None:
            self.add(door, *spot[:3], floor_standing=False)

    def beds(self, count: int) -> None:
        """Beds with the headboard against a wall, and nightstands beside them when there is room."""
        for _ in range(count):
            bed = self.b.bed()
            spot = self.layout.against_wall(*bed.half_xy)
            if spot is None:
                continue
            x, y, yaw, _ = spot
            self.add(bed, x, y, yaw)
            for side in (-1, 1):
                if self.rng.random() < 0.6:
                    stand = self.b.nightstand()
                    lx = side * (bed.half_xy[0] + 0.05 + stand.half_xy[0])
                    sx, sy = _local_to_world(x, y, yaw, lx, -bed.half_xy[1] + stand.half_xy[1] + 0.02)
                    if self.layout.try_place(sx, sy, *stand.half_xy, yaw, margin=0.02):
                        self.add(stand, sx, sy, yaw)

    def sofas(self, count: int) -> list[tuple[float, float, float, Piece]]:
        placed = []
        for _ in range(count):
            sofa = self.b.sofa()
            spot = self.layout.against_wall(*sofa.half_xy)
            if spot is not None:
                self.add(sofa, *spot[:3])
                placed.append((*spot[:3], sofa))
        return placed

    def coffee_tables(self, sofas, budget: int) -> int:
        """A coffee table (and a rug) in front of each sofa while the table budget lasts; returns how many."""
        used = 0
        for x, y, yaw, sofa in sofas[:budget]:
            table = self.b.table("coffee")
            tx, ty = _local_to_world(x, y, yaw, 0.0, sofa.half_xy[1] + 0.45 + table.half_xy[1])
            if self.layout.try_place(tx, ty, *table.half_xy, yaw, margin=0.05):
                self.add(table, tx, ty, yaw)
                used += 1
                self.rug_spot = (tx, ty, table.half_xy[0] + 0.5, table.half_xy[1] + 0.4, yaw)
        return used

    def dining_tables(self, count: int, chairs: int) -> int:
        """Free-standing tables with chairs around them, facing the table; returns the chairs left."""
        rng = self.rng
        for _ in range(count):
            table = self.b.table("round" if rng.random() < 0.3 else "dining")
            yaw = float(rng.choice([0.0, math.pi / 2]))
            hx, hy = table.half_xy
            spot = self.layout.anywhere(hx + 0.55, hy + 0.55, yaw, wall_margin=0.1)  # a ring for the chairs
            if spot is None:
                continue
            self.layout.boxes.pop()  # the ring is for the chairs: only the table stays reserved
            self.layout.try_place(*spot, hx, hy, yaw, margin=0.0)
            self.add(table, *spot, yaw)
            if self.rug_spot is None and rng.random() < 0.6:
                self.rug_spot = (*spot, hx + 0.6, hy + 0.6, yaw)
            chair = self.b.chair()  # one design per table
            depth = chair.half_xy[1]
            # (x, y) of the seat in table coordinates and the chair's yaw there, front (+y) to the table
            sides = (
                [(0.0, -1.0, 0.0), (0.0, 1.0, math.pi)]
                if hx < 0.65
                else [(-0.5, -1.0, 0.0), (0.5, -1.0, 0.0), (-0.5, 1.0, math.pi), (0.5, 1.0, math.pi)]
            )
            sides += [(-1.0, 0.0, -math.pi / 2), (1.0, 0.0, math.pi / 2)]
            for k in rng.permutation(len(sides)):
                if chairs == 0:
                    break
                fx, fy, face = sides[k]
                pull = rng.uniform(-0.03, 0.2)  # how far the chair is pulled out
                lx, ly = (fx * hx, fy * (hy + depth + pull)) if fy else (fx * (hx + depth + pull), 0.0)
                cx, cy = _local_to_world(*spot, yaw, lx, ly)
                cyaw = yaw + face + rng.uniform(-0.25, 0.25)
                if self.layout.try_place(cx, cy, *chair.half_xy, cyaw, margin=0.0):
                    self.add(chair, cx, cy, cyaw)
                    chairs -= 1
        return chairs

    def wall_chairs(self, count: int) -> None:
        for _ in range(count):
            chair = self.b.chair()
            spot = self.layout.against_wall(*chair.half_xy, gap=0.05)
            if spot is not None:
                self.add(chair, *spot[:3])

    def others(self, count: int) -> None:
        """Shelves, cabinets and TVs along the walls; lamps and plants in the corners."""
        for _ in range(count):
            piece = self.b.other()
            if piece.name in ("floor lamp", "plant"):
                corner = float(self.rng.choice([-1, 1]))
                spot = self.layout.against_wall(
                    *piece.half_xy, gap=0.08, along=lambda length, hx: corner * (length / 2 - hx - 0.08)
                )
            else:
                spot = self.layout.against_wall(*piece.half_xy)
            if spot is not None:
                self.add(piece, *spot[:3])

    def rug(self) -> None:
        if self.rug_spot is not None:
            x, y, hx, hy, yaw = self.rug_spot
            rug = Piece("rug", [Part("box", (0, 0, 0.005), (hx, hy, 0.005), self.b.pattern(), OTHER)], (hx, hy))
            self.add(rug, x, y, yaw, floor_standing=False)

    def pictures(self, count: int) -> None:
        """Framed pictures at eye height, on wall stretches with nothing standing below them."""
        rng, b = self.rng, self.b
        for _ in range(count):
            hx, hz = rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.35)
            for _ in range(20):
                wall = int(rng.integers(4))
                length, half = (self.D, self.W / 2) if wall < 2 else (self.W, self.D / 2)
                along = rng.uniform(-length / 2 + hx + 0.2, length / 2 - hx - 0.2)

                def on_wall(offset: float) -> tuple[float, float]:  # a point `offset` in front of the wall
                    n = half - offset
                    return ((-n if wall == 0 else n), along) if wall < 2 else (along, (-n if wall == 2 else n))

                below = self.layout.aabb(*on_wall(0.3), hx, 0.3, _yaw_facing(wall))
                if not self.layout.free(below):
                    continue
                self.layout.boxes.append(below)
                z = rng.uniform(1.35, min(1.8, self.H - hz - 0.3))
                frame, canvas = b.frame(), b.pattern()
                picture = Piece(
                    "picture",
                    [
                        Part("box", (0, 0, z), (hx, 0.015, hz), frame, OTHER),
                        Part("box", (0, 0.006, z), (hx - 0.03, 0.015, hz - 0.03), canvas, OTHER),
                    ],
                    (hx, 0.015),
                )
                self.add(picture, *on_wall(0.015), _yaw_facing(wall), floor_standing=False)
                break

    def ceiling_lights(self) -> list[tuple[float, float, float, float]]:
        """One or two emissive ceiling fixtures, each with a point light just below it."""
        rng, W, D, H = self.rng, self.W, self.D, self.H
        glow = self.b.add("emissive", (1.0, 0.98, 0.92))
        if max(W, D) < 5.5:
            spots = [(0.0, 0.0)]
        else:
            spots = [(-W / 4, 0.0), (W / 4, 0.0)] if W > D else [(0.0, -D / 4), (0.0, D / 4)]
        lights = []
        for lx, ly in spots:
            lx, ly = lx + rng.uniform(-0.3, 0.3), ly + rng.uniform(-0.3, 0.3)
            fixture = Piece(
                "ceiling light", [Part("cylinder", (0, 0, H - 0.02), (0.2, 0.2, 0.02), glow, OTHER)], (0.2, 0.2)
            )
            self.add(fixture, lx, ly, 0.0, floor_standing=False)
            lights.append((lx, ly, H - 0.12, 1.0 / len(spots)))
        return lights
