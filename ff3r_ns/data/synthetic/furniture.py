"""Furniture: random materials and the pieces (chairs, tables, sofas, beds, shelves, ...) built from them.

Each builder returns parts in the object's frame (origin on the floor at the footprint centre, back
towards -y, front towards +y) and the footprint half extents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ff3r_ns.data.classes import BED, CHAIR, OTHER, SOFA, TABLE
from ff3r_ns.data.synthetic.room import Material


@dataclass
class Part:
    kind: str
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    material: int
    label: int


@dataclass
class Piece:
    name: str
    parts: list[Part]
    half_xy: tuple[float, float]


WOODS = ((0.55, 0.37, 0.21), (0.40, 0.25, 0.14), (0.72, 0.56, 0.38), (0.30, 0.19, 0.12), (0.80, 0.67, 0.50))
FABRICS = (
    (0.30, 0.38, 0.55),
    (0.55, 0.55, 0.52),
    (0.24, 0.40, 0.31),
    (0.62, 0.28, 0.25),
    (0.76, 0.68, 0.54),
    (0.28, 0.28, 0.31),
    (0.45, 0.33, 0.52),
    (0.70, 0.55, 0.30),
    (0.20, 0.48, 0.50),
)
PAINTS = (
    (0.93, 0.93, 0.91),
    (0.15, 0.15, 0.16),
    (0.70, 0.20, 0.18),
    (0.25, 0.45, 0.65),
    (0.85, 0.75, 0.30),
    (0.45, 0.60, 0.45),
)
WALL_PAINTS = (
    (0.90, 0.88, 0.82),
    (0.80, 0.85, 0.90),
    (0.92, 0.84, 0.74),
    (0.78, 0.86, 0.78),
    (0.94, 0.93, 0.90),
    (0.88, 0.80, 0.82),
)


class FurnitureBuilder:
    """Random materials and furniture of one room."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.materials: list[Material] = []

    def jitter(self, color, amount: float = 0.06) -> tuple[float, float, float]:
        c = np.clip(np.asarray(color) * (1.0 + self.rng.uniform(-amount, amount, 3)), 0.02, 0.98)
        return tuple(float(x) for x in c)

    def add(self, kind: str, color1, color2=None, scale: float = 1.0, angle: float = 0.0) -> int:
        color2 = color1 if color2 is None else color2
        self.materials.append(
            Material(kind, tuple(map(float, color1)), tuple(map(float, color2)), float(scale), float(angle))
        )
        return len(self.materials) - 1

    def pick(self, palette):
        return palette[int(self.rng.integers(len(palette)))]

    def wood(self) -> int:
        base = self.jitter(self.pick(WOODS))
        return self.add("wood", base, tuple(0.72 * c for c in base), scale=float(self.rng.uniform(12, 30)))

    def fabric(self) -> int:
        base = self.jitter(self.pick(FABRICS), 0.12)
        return self.add("fabric", base, tuple(0.8 * c for c in base), scale=float(self.rng.uniform(3, 8)))

    def paint(self, palette=PAINTS) -> int:
        return self.add("plain", self.jitter(self.pick(palette), 0.05), scale=4.0)

    def frame(self) -> int:
        return self.wood() if self.rng.random() < 0.6 else self.paint()

    def pattern(self) -> int:
        rng = self.rng
        c1, c2 = self.jitter(self.pick(FABRICS), 0.2), self.jitter(self.pick(PAINTS + FABRICS), 0.2)
        kind = ("stripes", "tiles", "fabric")[int(rng.integers(3))]
        return self.add(
            kind, c1, c2, scale=float(rng.uniform(4, 12)), angle=float(rng.choice([0.0, math.pi / 2, math.pi / 4]))
        )

    # -- pieces ---------------------------------------------------------------------------------------

    def legs(self, parts, hx, hy, inset, height, mat, label, round_legs: bool, r: float) -> None:
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (hx - inset), sy * (hy - inset)
                if round_legs:
                    parts.append(Part("cylinder", (x, y, height / 2), (r, r, height / 2), mat, label))
                else:
                    parts.append(Part("box", (x, y, height / 2), (r, r, height / 2), mat, label))

    def chair(self) -> Piece:
        rng = self.rng
        hx, hy = rng.uniform(0.2, 0.25), rng.uniform(0.2, 0.25)
        seat_z, seat_t = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.06)
        frame = self.frame()
        seat = self.fabric() if rng.random() < 0.5 else frame
        parts: list[Part] = []
        self.legs(parts, hx, hy, 0.025, seat_z - seat_t, frame, CHAIR, rng.random() < 0.5, 0.018)
        parts.append(Part("box", (0, 0, seat_z - seat_t / 2), (hx, hy, seat_t / 2), seat, CHAIR))
        back_h, back_t = rng.uniform(0.35, 0.5), 0.025
        top = seat_z + back_h
        if rng.random() < 0.5:  # solid back panel
            parts.append(
                Part("box", (0, -hy + back_t, seat_z + back_h * 0.6), (hx, back_t, back_h * 0.4), seat, CHAIR)
            )
            for sx in (-1, 1):
                parts.append(
                    Part(
                        "box",
                        (sx * (hx - 0.02), -hy + back_t, seat_z + back_h / 2),
                        (0.02, back_t, back_h / 2),
                        frame,
                        CHAIR,
                    )
                )
        else:  # posts and slats
            for sx in (-1, 1):
                parts.append(
                    Part(
                        "box",
                        (sx * (hx - 0.02), -hy + back_t, seat_z + back_h / 2),
                        (0.02, back_t, back_h / 2),
                        frame,
                        CHAIR,
                    )
                )
            for k in range(int(rng.integers(2, 4))):
                z = top - 0.04 - k * 0.11
                parts.append(Part("box", (0, -hy + back_t, z), (hx - 0.02, 0.015, 0.035), frame, CHAIR))
        if rng.random() < 0.3:  # armrests
            for sx in (-1, 1):
                parts.append(
                    Part("box", (sx * (hx - 0.02), 0.0, seat_z + 0.22), (0.02, hy - 0.02, 0.015), frame, CHAIR)
                )
                parts.append(
                    Part("box", (sx * (hx - 0.02), hy - 0.05, seat_z + 0.11), (0.015, 0.015, 0.11), frame, CHAIR)
                )
        return Piece("chair", parts, (hx, hy))

    def table(self, kind: str) -> Piece:
        rng = self.rng
        top_mat = self.wood() if rng.random() < 0.75 else self.paint()
        leg_mat = top_mat if rng.random() < 0.6 else self.paint()
        parts: list[Part] = []
        if kind == "round":
            r, h = rng.uniform(0.45, 0.6), rng.uniform(0.72, 0.77)
            parts.append(Part("cylinder", (0, 0, h - 0.02), (r, r, 0.02), top_mat, TABLE))
            parts.append(Part("cylinder", (0, 0, h / 2), (0.05, 0.05, h / 2 - 0.02), leg_mat, TABLE))
            parts.append(Part("cylinder", (0, 0, 0.02), (0.28, 0.28, 0.02), leg_mat, TABLE))
            return Piece("round table", parts, (r, r))
        if kind == "coffee":
            hx, hy, h = rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.32), rng.uniform(0.38, 0.45)
        else:
            hx, hy, h = rng.uniform(0.5, 0.9), rng.uniform(0.38, 0.5), rng.uniform(0.72, 0.77)
        t = rng.uniform(0.025, 0.05)
        parts.append(Part("box", (0, 0, h - t / 2), (hx, hy, t / 2), top_mat, TABLE))
        self.legs(parts, hx, hy, 0.05, h - t, leg_mat, TABLE, rng.random() < 0.5, 0.025)
        if rng.random() < 0.6:  # apron under the top
            parts.append(Part("box", (0, 0, h - t - 0.04), (hx - 0.06, hy - 0.06, 0.04), leg_mat, TABLE))
        if kind == "coffee" and rng.random() < 0.5:  # lower shelf
            parts.append(Part("box", (0, 0, 0.12), (hx - 0.06, hy - 0.06, 0.012), leg_mat, TABLE))
        return Piece(f"{kind} table", parts, (hx, hy))

    def sofa(self) -> Piece:
        rng = self.rng
        hx, hy = rng.uniform(0.8, 1.2), rng.uniform(0.42, 0.48)
        mat, cushion, feet = self.fabric(), self.fabric() if rng.random() < 0.3 else None, self.wood()
        cushion = mat if cushion is None else cushion
        arm_w, foot, seat_z, back_t = rng.uniform(0.12, 0.22), 0.08, rng.uniform(0.38, 0.44), rng.uniform(0.16, 0.22)
        arm_h, back_h = rng.uniform(0.55, 0.68), rng.uniform(0.78, 0.9)
        parts = [
            Part("cylinder", (sx * (hx - 0.06), sy * (hy - 0.06), foot / 2), (0.025, 0.025, foot / 2), feet, SOFA)
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]
        base_top = seat_z - 0.1
        parts.append(Part("box", (0, 0, (foot + base_top) / 2), (hx, hy, (base_top - foot) / 2), mat, SOFA))
        for sx in (-1, 1):
            parts.append(
                Part(
                    "box",
                    (sx * (hx - arm_w / 2), 0, (foot + arm_h) / 2),
                    (arm_w / 2, hy, (arm_h - foot) / 2),
                    mat,
                    SOFA,
                )
            )
        parts.append(
            Part(
                "box",
                (0, -hy + back_t / 2, (base_top + back_h) / 2),
                (hx - arm_w, back_t / 2, (back_h - base_top) / 2),
                mat,
                SOFA,
            )
        )
        n = int(rng.integers(2, 4))
        inner = hx - arm_w
        width = 2 * inner / n
        for k in range(n):
            x = -inner + width * (k + 0.5)
            parts.append(
                Part("box", (x, back_t / 2, seat_z - 0.05), (width / 2 - 0.008, hy - back_t / 2, 0.05), cushion, SOFA)
            )
            if rng.random() < 0.6:  # back cushion
                parts.append(
                    Part("box", (x, -hy + back_t + 0.06, seat_z + 0.2), (width / 2 - 0.01, 0.06, 0.18), cushion, SOFA)
                )
        return Piece("sofa", parts, (hx, hy))

    def bed(self) -> Piece:
        rng = self.rng
        hx = rng.choice([rng.uniform(0.5, 0.6), rng.uniform(0.7, 0.95)])
        hy = rng.uniform(1.0, 1.08)
        frame, sheet, blanket, pillow = (
            self.wood(),
            self.paint(((0.95, 0.95, 0.93), (0.90, 0.92, 0.96))),
            self.pattern(),
            self.paint(((0.97, 0.97, 0.95), (0.92, 0.88, 0.84))),
        )
        leg, frame_h, mattress_h = rng.uniform(0.08, 0.14), 0.22, rng.uniform(0.18, 0.25)
        parts: list[Part] = []
        self.legs(parts, hx, hy, 0.05, leg, frame, BED, False, 0.03)
        parts.append(Part("box", (0, 0, leg + frame_h / 2), (hx, hy, frame_h / 2), frame, BED))
        mattress_top = leg + frame_h + mattress_h
        parts.append(
            Part("box", (0, 0.02, mattress_top - mattress_h / 2), (hx - 0.03, hy - 0.05, mattress_h / 2), sheet, BED)
        )
        head_h = rng.uniform(0.9, 1.2)
        parts.append(Part("box", (0, -hy + 0.03, head_h / 2), (hx + 0.02, 0.03, head_h / 2), frame, BED))
        if rng.random() < 0.4:
            parts.append(
                Part(
                    "box",
                    (0, hy - 0.03, (mattress_top - 0.05) / 2),
                    (hx + 0.02, 0.03, (mattress_top - 0.05) / 2),
                    frame,
                    BED,
                )
            )
        blanket_start = -hy + rng.uniform(0.55, 0.8)
        y0, y1 = blanket_start, hy - 0.02
        parts.append(
            Part("box", (0, (y0 + y1) / 2, mattress_top - 0.05), (hx - 0.01, (y1 - y0) / 2, 0.075), blanket, BED)
        )
        n = 1 if hx < 0.7 else 2
        for k in range(n):
            x = 0.0 if n == 1 else (k - 0.5) * hx
            parts.append(
                Part("box", (x, -hy + 0.3, mattress_top + 0.06), (min(0.3, hx - 0.08), 0.18, 0.07), pillow, BED)
            )
        return Piece("bed", parts, (hx, hy))

    def shelf(self) -> Piece:
        rng = self.rng
        hx, hy, h = rng.uniform(0.3, 0.6), rng.uniform(0.14, 0.2), rng.uniform(1.4, 2.0)
        mat, t = self.frame(), 0.02
        parts = [Part("box", (sx * (hx - t / 2), 0, h / 2), (t / 2, hy, h / 2), mat, OTHER) for sx in (-1, 1)] + [
            Part("box", (0, -hy + 0.005, h / 2), (hx, 0.005, h / 2), mat, OTHER)
        ]
        n = int(rng.integers(3, 6))
        levels = np.linspace(0.06, h - t / 2, n + 1)
        for z in levels:
            parts.append(Part("box", (0, 0, z), (hx - t, hy, t / 2), mat, OTHER))
        book_mats = [self.paint(PAINTS + FABRICS) for _ in range(4)]
        for lo, hi in zip(levels[:-1], levels[1:]):
            gap = hi - lo - t
            x = -hx + t
            while True:
                width = rng.uniform(0.02, 0.05)
                if x + width > hx - t - 0.01:
                    break
                if rng.random() < 0.15:  # a gap
                    x += rng.uniform(0.05, 0.15)
                    continue
                bh = gap * rng.uniform(0.55, 0.9)
                bd = hy * rng.uniform(0.7, 0.95)
                parts.append(
                    Part(
                        "box",
                        (x + width / 2, -hy + 0.01 + bd, lo + t / 2 + bh / 2),
                        (width / 2 - 0.001, bd, bh / 2),
                        book_mats[int(rng.integers(4))],
                        OTHER,
                    )
                )
                x += width
        return Piece("bookshelf", parts, (hx, hy))

    def cabinet(self) -> Piece:
        rng = self.rng
        hx, hy, h = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.28), rng.uniform(0.55, 1.1)
        body, front = self.frame(), self.frame()
        parts = [Part("box", (0, 0, h / 2 + 0.03), (hx, hy, h / 2 - 0.03), body, OTHER)]
        n = max(1, int(round((h - 0.06) / 0.25)))
        step = (h - 0.08) / n
        for k in range(n):
            z = 0.06 + step * (k + 0.5)
            parts.append(Part("box", (0, hy + 0.008, z), (hx - 0.025, 0.008, step / 2 - 0.012), front, OTHER))
            parts.append(
                Part(
                    "box",
                    (0, hy + 0.025, z),
                    (0.04, 0.01, 0.01),
                    self.paint(((0.7, 0.7, 0.72), (0.2, 0.2, 0.2))),
                    OTHER,
                )
            )
        if rng.random() < 0.5:  # a vase on top
            r = rng.uniform(0.05, 0.09)
            parts.append(
                Part("cylinder", (rng.uniform(-hx + r, hx - r), 0, h + 0.12), (r, r, 0.12), self.paint(), OTHER)
            )
        return Piece("cabinet", parts, (hx, hy))

    def lamp(self) -> Piece:
        rng = self.rng
        h, r = rng.uniform(1.4, 1.7), rng.uniform(0.16, 0.22)
        metal, shade = self.paint(((0.15, 0.15, 0.16), (0.75, 0.72, 0.65))), self.paint(
            ((0.96, 0.92, 0.80), (0.92, 0.85, 0.70), (0.85, 0.90, 0.92))
        )
        parts = [
            Part("cylinder", (0, 0, 0.015), (0.15, 0.15, 0.015), metal, OTHER),
            Part("cylinder", (0, 0, h / 2), (0.014, 0.014, h / 2), metal, OTHER),
            Part("cylinder", (0, 0, h + 0.1), (r, r, 0.15), shade, OTHER),
        ]
        return Piece("floor lamp", parts, (r, r))

    def plant(self) -> Piece:
        rng = self.rng
        r, pot_h = rng.uniform(0.14, 0.2), rng.uniform(0.25, 0.4)
        pot = self.add("plain", self.jitter((0.70, 0.40, 0.25), 0.15), scale=4)
        leaf = self.add("fabric", self.jitter((0.22, 0.45, 0.20), 0.2), self.jitter((0.12, 0.30, 0.12), 0.2), scale=10)
        parts = [Part("cylinder", (0, 0, pot_h / 2), (r, r, pot_h / 2), pot, OTHER)]
        z, rr = pot_h, r * 1.8
        for _ in range(int(rng.integers(2, 4))):
            th = rng.uniform(0.18, 0.3)
            parts.append(Part("cylinder", (0, 0, z + th / 2), (rr, rr, th / 2), leaf, OTHER))
            z, rr = z + th * 0.85, rr * 0.7
        return Piece("plant", parts, (r * 1.8, r * 1.8))

    def tv(self) -> Piece:
        rng = self.rng
        hx, h = rng.uniform(0.5, 0.8), rng.uniform(0.4, 0.55)
        stand = self.frame()
        screen = self.add("plain", (0.05, 0.05, 0.06), scale=2)
        hy = 0.22
        parts = [
            Part("box", (0, 0, h / 2), (hx, hy, h / 2), stand, OTHER),
            Part("box", (0, -0.05, h + 0.02), (0.15, 0.08, 0.02), screen, OTHER),
        ]
        sx, sz = min(hx - 0.05, rng.uniform(0.45, 0.65)), rng.uniform(0.27, 0.37)
        parts.append(Part("box", (0, -0.05, h + 0.06 + sz), (sx, 0.025, sz), screen, OTHER))
        return Piece("tv", parts, (hx, hy))

    def nightstand(self) -> Piece:
        rng = self.rng
        hx, hy, h = rng.uniform(0.2, 0.25), rng.uniform(0.18, 0.22), rng.uniform(0.45, 0.6)
        body, knob = self.frame(), self.paint(((0.7, 0.7, 0.72), (0.2, 0.2, 0.2)))
        parts = [
            Part("box", (0, 0, h / 2 + 0.02), (hx, hy, h / 2 - 0.02), body, OTHER),
            Part("box", (0, hy + 0.006, h - 0.1), (hx - 0.02, 0.006, 0.07), body, OTHER),
            Part("box", (0, hy + 0.02, h - 0.1), (0.03, 0.01, 0.01), knob, OTHER),
        ]
        if rng.random() < 0.6:  # a table lamp
            shade = self.paint(((0.96, 0.92, 0.80), (0.85, 0.90, 0.92)))
            parts += [
                Part("cylinder", (0, -0.03, h + 0.12), (0.05, 0.05, 0.12), knob, OTHER),
                Part("cylinder", (0, -0.03, h + 0.32), (0.12, 0.12, 0.09), shade, OTHER),
            ]
        return Piece("nightstand", parts, (hx, hy))

    def other(self) -> Piece:
        kind = int(self.rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1]))
        return (self.shelf, self.cabinet, self.plant, self.lamp, self.tv)[kind]()
