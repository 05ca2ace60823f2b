"""Ray casting against a packed room: boxes, vertical cylinders and the closed shell, with screen-space culling."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.data.classes import CEILING, FLOOR, WALL
from ff3r_ns.data.synthetic.room import MATERIAL_KINDS, Room

_EPS = 1e-4  # metres; minimum ray distance, keeps shadow rays off their own surface


@dataclass
class _Group:
    lo: Tensor  # [3] world AABB
    hi: Tensor
    boxes: Tensor  # primitive indices
    cylinders: Tensor


@dataclass
class PackedRoom:
    """The room as float32 tensors, for the ray caster."""

    size: Tensor  # [3]
    center: Tensor  # [P, 3]
    half: Tensor  # [P, 3]
    cos: Tensor  # [P]
    sin: Tensor
    is_box: Tensor  # [P] bool
    material: Tensor  # [P] long
    label: Tensor
    materials: Tensor  # [M, 9]: kind, color1, color2, scale, angle
    shell_material: Tensor  # [6]
    lights: Tensor  # [L, 4]
    footprints: Tensor  # [F, 5]
    groups: list[_Group]
    group_lo: Tensor  # [G, 3]
    group_hi: Tensor
    group_corners: Tensor  # [G, 8, 3]
    casters: list[int]  # groups that cast shadows (not the light fixtures)

    @staticmethod
    def build(room: Room) -> "PackedRoom":
        f32 = dict(dtype=torch.float32)
        prims = room.primitives
        center = torch.tensor([p.center for p in prims], **f32).reshape(-1, 3)
        half = torch.tensor([p.half_size for p in prims], **f32).reshape(-1, 3)
        yaw = torch.tensor([p.yaw for p in prims], dtype=torch.float64)
        is_box = torch.tensor([p.kind == "box" for p in prims], dtype=torch.bool)
        groups, los, his = [], [], []
        for g in range(len(room.objects)):
            idx = [i for i, p in enumerate(prims) if p.group == g]
            corners = []
            for i in idx:
                p = prims[i]
                ex = (
                    abs(math.cos(p.yaw)) * p.half_size[0] + abs(math.sin(p.yaw)) * p.half_size[1]
                    if p.kind == "box"
                    else p.half_size[0]
                )
                ey = (
                    abs(math.sin(p.yaw)) * p.half_size[0] + abs(math.cos(p.yaw)) * p.half_size[1]
                    if p.kind == "box"
                    else p.half_size[0]
                )
                e = np.array([ex, ey, p.half_size[2]])
                corners += [np.asarray(p.center) - e, np.asarray(p.center) + e]
            corners = np.stack(corners)
            lo, hi = torch.tensor(corners.min(0) - 1e-3, **f32), torch.tensor(corners.max(0) + 1e-3, **f32)
            ids = torch.tensor(idx, dtype=torch.long)
            groups.append(_Group(lo, hi, ids[is_box[ids]], ids[~is_box[ids]]))
            los.append(lo)
            his.append(hi)
        lo_all, hi_all = torch.stack(los).reshape(-1, 3), torch.stack(his).reshape(-1, 3)
        pick = torch.tensor([[(k >> a) & 1 for a in range(3)] for k in range(8)], dtype=torch.bool)
        corners = torch.where(pick, hi_all[:, None, :], lo_all[:, None, :])
        materials = torch.tensor(
            [[MATERIAL_KINDS.index(m.kind), *m.color1, *m.color2, m.scale, m.angle] for m in room.materials], **f32
        )
        return PackedRoom(
            size=torch.tensor(room.size, **f32),
            center=center,
            half=half,
            cos=torch.cos(yaw).float(),
            sin=torch.sin(yaw).float(),
            is_box=is_box,
            material=torch.tensor([p.material for p in prims], dtype=torch.long),
            label=torch.tensor([p.label for p in prims], dtype=torch.long),
            materials=materials,
            shell_material=torch.tensor(room.shell_materials, dtype=torch.long),
            lights=torch.tensor(room.lights, **f32).reshape(-1, 4),
            footprints=torch.tensor(room.footprints, **f32).reshape(-1, 5),
            groups=groups,
            group_lo=lo_all,
            group_hi=hi_all,
            group_corners=corners,
            casters=[g for g, name in enumerate(room.objects) if name != "ceiling light"],
        )


def _safe_inverse(d: Tensor) -> Tensor:
    return 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)


def _box_hits(pk: PackedRoom, ids: Tensor, o: Tensor, d: Tensor) -> Tensor:
    """Entry distance of rays ``[n, 3]`` into boxes ``ids`` (inf on a miss): ``[n, len(ids)]``."""
    c, h = pk.center[ids], pk.half[ids]
    cs, sn = pk.cos[ids], pk.sin[ids]
    rel = o[:, None, :] - c  # [n, b, 3]
    ox = cs * rel[..., 0] + sn * rel[..., 1]
    oy = -sn * rel[..., 0] + cs * rel[..., 1]
    dx = cs * d[:, None, 0] + sn * d[:, None, 1]
    dy = -sn * d[:, None, 0] + cs * d[:, None, 1]
    dz = d[:, None, 2].expand_as(dx)
    t_near = torch.full_like(ox, -math.inf)
    t_far = torch.full_like(ox, math.inf)
    for oa, da, ha in ((ox, dx, h[:, 0]), (oy, dy, h[:, 1]), (rel[..., 2], dz, h[:, 2])):
        inv = _safe_inverse(da)
        t1, t2 = (-ha - oa) * inv, (ha - oa) * inv
        t_near = torch.maximum(t_near, torch.minimum(t1, t2))
        t_far = torch.minimum(t_far, torch.maximum(t1, t2))
    return torch.where((t_far >= t_near) & (t_near > _EPS), t_near, torch.full_like(t_near, math.inf))


def _cylinder_hits(pk: PackedRoom, ids: Tensor, o: Tensor, d: Tensor) -> Tensor:
    """Entry distance of rays ``[n, 3]`` into vertical cylinders ``ids`` (inf on a miss): ``[n, len(ids)]``."""
    c, r, hh = pk.center[ids], pk.half[ids, 0], pk.half[ids, 2]
    rel = o[:, None, :] - c
    x, y, z = rel[..., 0], rel[..., 1], rel[..., 2]
    dx, dy, dz = d[:, None, 0], d[:, None, 1], d[:, None, 2]
    a = (dx * dx + dy * dy).clamp(min=1e-12)
    b = x * dx + y * dy
    disc = b * b - a * (x * x + y * y - r * r)
    t_side = (-b - disc.clamp(min=0).sqrt()) / a
    inf = torch.full_like(t_side, math.inf)
    side_ok = (disc >= 0) & (t_side > _EPS) & ((z + t_side * dz).abs() <= hh)
    best = torch.where(side_ok, t_side, inf)
    inv = _safe_inverse(dz)
    for plane in (hh, -hh):
        t_cap = (plane - z) * inv
        xs, ys = x + t_cap * dx, y + t_cap * dy
        ok = (t_cap > _EPS) & (xs * xs + ys * ys <= r * r)
        best = torch.minimum(best, torch.where(ok, t_cap, inf))
    return best


def trace(
    pk: PackedRoom, o: Tensor, d: Tensor, t_max: Tensor, screen: Tensor, rects: Tensor, groups: list[int]
) -> tuple[Tensor, Tensor]:
    """Nearest primitive hit closer than ``t_max`` for rays ``o [n|1, 3]``, ``d [n, 3]``: (t, primitive or -1).

    Culling: ray k can only hit group g if its 2D coordinate ``screen[k]`` (a projection about the
    rays' common centre: the camera, or a light) lies in the group's projected rectangle
    ``rects[g] = (u0, v0, u1, v1)``; survivors are tested against the group's box, then its parts.
    """
    n = d.shape[0]
    best_t, best_p = t_max.clone(), torch.full((n,), -1, dtype=torch.long)
    if not groups:
        return best_t, best_p
    r = rects[groups]
    inside = (screen[None, :, 0] >= r[:, None, 0]) & (screen[None, :, 0] <= r[:, None, 2])
    inside &= (screen[None, :, 1] >= r[:, None, 1]) & (screen[None, :, 1] <= r[:, None, 3])  # [G, n]
    per_ray_origin = o.shape[0] > 1
    for row, g in enumerate(groups):
        rays = inside[row].nonzero()[:, 0]
        if rays.numel() == 0:
            continue
        oo, dd = (o[rays] if per_ray_origin else o), d[rays]
        inv = _safe_inverse(dd)
        t1, t2 = (pk.group_lo[g] - oo) * inv, (pk.group_hi[g] - oo) * inv
        t_near, t_far = torch.minimum(t1, t2).amax(-1), torch.maximum(t1, t2).amin(-1)
        keep = ((t_far >= t_near) & (t_far > _EPS) & (t_near < best_t[rays])).nonzero()[:, 0]
        if keep.numel() == 0:
            continue
        rays, dd = rays[keep], dd[keep]
        oo = oo[keep] if per_ray_origin else oo.expand_as(dd)
        t_cur, p_cur = best_t[rays], best_p[rays]
        group = pk.groups[g]
        for ids, hits in ((group.boxes, _box_hits), (group.cylinders, _cylinder_hits)):
            if ids.numel() == 0:
                continue
            t, k = hits(pk, ids, oo, dd).min(1)
            closer = t < t_cur
            t_cur = torch.where(closer, t, t_cur)
            p_cur = torch.where(closer, ids[k], p_cur)
        best_t[rays], best_p[rays] = t_cur, p_cur
    return best_t, best_p


def camera_rects(pk: PackedRoom, c2w: np.ndarray, intrinsics: np.ndarray) -> Tensor:
    """Pixel rectangles ``[G, 4]`` that contain each group's box in the image (unbounded if behind)."""
    R = torch.from_numpy(c2w[:3, :3].astype(np.float32))
    rel = pk.group_corners - torch.from_numpy(c2w[:3, 3].astype(np.float32))
    cam = (rel[..., :, None] * R).sum(-2)  # R^T (x - c): [G, 8, 3]
    z = cam[..., 2].clamp(min=1e-6)
    u = cam[..., 0] / z * float(intrinsics[0, 0]) + float(intrinsics[0, 2])
    v = cam[..., 1] / z * float(intrinsics[1, 1]) + float(intrinsics[1, 2])
    rects = torch.stack([u.amin(-1) - 1, v.amin(-1) - 1, u.amax(-1) + 1, v.amax(-1) + 1], -1)
    behind = (cam[..., 2] <= 1e-3).any(-1)
    return torch.where(behind[:, None], torch.tensor([-math.inf, -math.inf, math.inf, math.inf]), rects)


def light_coords(light: Tensor, points: Tensor) -> Tensor:
    """Central projection of points ``[..., 3]`` below a light onto a horizontal plane: ``[..., 2]``."""
    return (points[..., :2] - light[:2]) / (light[2] - points[..., 2:]).clamp(min=1e-6)


def light_rects(pk: PackedRoom, light: Tensor) -> Tensor:
    """Rectangles ``[G, 4]`` of each group's box in :func:`light_coords` (unbounded if not below it)."""
    s = light_coords(light, pk.group_corners)
    rects = torch.cat([s.amin(-2), s.amax(-2)], -1)
    above = (pk.group_corners[..., 2] >= light[2] - 1e-3).any(-1)
    return torch.where(above[:, None], torch.tensor([-math.inf, -math.inf, math.inf, math.inf]), rects)


def shell_exit(pk: PackedRoom, o: Tensor, d: Tensor) -> Tensor:
    """Distance from inside the room to its walls, floor or ceiling along ``d``."""
    lo = torch.stack([-pk.size[0] / 2, -pk.size[1] / 2, torch.zeros(())])
    hi = torch.stack([pk.size[0] / 2, pk.size[1] / 2, pk.size[2]])
    inv = _safe_inverse(d)
    return torch.maximum((lo - o) * inv, (hi - o) * inv).amin(-1)


def surface(pk: PackedRoom, p: Tensor, prim: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Normal, texture coordinates (metres), material, label and a texture key at hit points ``p``."""
    n = p.shape[0]
    normal, uv = torch.zeros(n, 3), torch.zeros(n, 2)
    material, label, key = (
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
    )
    W, D, H = pk.size
    shell = (prim < 0).nonzero()[:, 0]
    if shell.numel():
        q = p[shell]
        dist = torch.stack(
            [q[:, 0] + W / 2, W / 2 - q[:, 0], q[:, 1] + D / 2, D / 2 - q[:, 1], q[:, 2], H - q[:, 2]], -1
        )
        face = dist.argmin(-1)
        axis = torch.tensor([0, 0, 1, 1, 2, 2])[face]
        sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])[face]
        normal[shell] = F.one_hot(axis, 3).float() * sign[:, None]
        u = torch.where(axis == 0, q[:, 1], q[:, 0])
        v = torch.where(axis == 2, q[:, 1], q[:, 2])
        uv[shell] = torch.stack([u, v], -1)
        material[shell] = pk.shell_material[face]
        label[shell] = torch.tensor([WALL, WALL, WALL, WALL, FLOOR, CEILING])[face]
        key[shell] = face
    hit = (prim >= 0).nonzero()[:, 0]
    if hit.numel():
        ids = prim[hit]
        c, h, cs, sn = pk.center[ids], pk.half[ids], pk.cos[ids], pk.sin[ids]
        rel = p[hit] - c
        lx, ly, lz = cs * rel[:, 0] + sn * rel[:, 1], -sn * rel[:, 0] + cs * rel[:, 1], rel[:, 2]
        local = torch.stack([lx, ly, lz], -1)
        # boxes: the face whose slab the point is on; u runs along the longer tangent side (wood grain)
        axis = (local.abs() / h.clamp(min=1e-6)).argmax(-1)
        n_local = F.one_hot(axis, 3).float() * torch.sign(local.gather(1, axis[:, None]))
        corner = local + h
        tangents = torch.tensor([[1, 2], [0, 2], [0, 1]])[axis]
        ta, tb = corner.gather(1, tangents[:, :1])[:, 0], corner.gather(1, tangents[:, 1:])[:, 0]
        ha, hb = h.gather(1, tangents[:, :1])[:, 0], h.gather(1, tangents[:, 1:])[:, 0]
        box_uv = torch.where((ha >= hb)[:, None], torch.stack([ta, tb], -1), torch.stack([tb, ta], -1))
        # cylinders: side (u along the axis, v around it) or caps
        radial = torch.sqrt(lx * lx + ly * ly).clamp(min=1e-9)
        cap = (lz.abs() / h[:, 2].clamp(min=1e-6)) > radial / h[:, 0]
        side_n = torch.stack([lx / radial, ly / radial, torch.zeros_like(lx)], -1)
        cap_n = torch.stack([torch.zeros_like(lx), torch.zeros_like(lx), torch.sign(lz)], -1)
        cyl_n = torch.where(cap[:, None], cap_n, side_n)
        cyl_uv = torch.where(
            cap[:, None], torch.stack([lx, ly], -1), torch.stack([lz + h[:, 2], torch.atan2(ly, lx) * h[:, 0]], -1)
        )
        box = pk.is_box[ids]
        nl = torch.where(box[:, None], n_local, cyl_n)
        normal[hit] = torch.stack([cs * nl[:, 0] - sn * nl[:, 1], sn * nl[:, 0] + cs * nl[:, 1], nl[:, 2]], -1)
        uv[hit] = torch.where(box[:, None], box_uv, cyl_uv)
        material[hit], label[hit] = pk.material[ids], pk.label[ids]
        key[hit] = 6 + ids * 8 + torch.where(box, axis, cap.long() + 3)
    return normal, uv, material, label, key
