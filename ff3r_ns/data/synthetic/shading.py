"""Procedural textures (value noise, wood, planks, tiles, stripes, fabric) and the lighting model."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ff3r_ns.data.synthetic.raytrace import PackedRoom, light_coords, light_rects, trace
from ff3r_ns.data.synthetic.room import MATERIAL_KINDS


def _hash(ix: Tensor, iy: Tensor, key: Tensor) -> Tensor:
    """Integer lattice hash to [0, 1) (bit-exact, no overflow in int64)."""
    h = (ix * 374761393 + iy * 668265263 + key * 1442695041) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).float() / 16777216.0


def _value_noise(u: Tensor, v: Tensor, key: Tensor) -> Tensor:
    fu, fv = torch.floor(u), torch.floor(v)
    iu, iv = fu.long(), fv.long()
    su, sv = u - fu, v - fv
    su, sv = su * su * (3 - 2 * su), sv * sv * (3 - 2 * sv)
    n00, n10 = _hash(iu, iv, key), _hash(iu + 1, iv, key)
    n01, n11 = _hash(iu, iv + 1, key), _hash(iu + 1, iv + 1, key)
    return (n00 + (n10 - n00) * su) * (1 - sv) + (n01 + (n11 - n01) * su) * sv


def _fbm(u: Tensor, v: Tensor, key: Tensor, octaves: int = 3) -> Tensor:
    total, amp, norm = torch.zeros_like(u), 1.0, 0.0
    for k in range(octaves):
        total += amp * _value_noise(u * 2**k, v * 2**k, key * 7 + k)
        norm += amp
        amp *= 0.5
    return total / norm


def _lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    return a + (b - a) * t[:, None]


def texture_albedo(params: Tensor, uv: Tensor, key: Tensor) -> Tensor:
    """sRGB albedo ``[n, 3]`` of procedural materials ``params [n, 9]`` at ``uv [n, 2]`` (metres)."""
    kind, c1, c2, scale, angle = params[:, 0].long(), params[:, 1:4], params[:, 4:7], params[:, 7], params[:, 8]
    ca, sa = torch.cos(angle), torch.sin(angle)
    u = ca * uv[:, 0] + sa * uv[:, 1]
    v = -sa * uv[:, 0] + ca * uv[:, 1]
    out = c1.clone()
    for k, name in enumerate(MATERIAL_KINDS):
        m = (kind == k).nonzero()[:, 0]
        if m.numel() == 0:
            continue
        mu, mv, mk, s, a, b = u[m], v[m], key[m], scale[m], c1[m], c2[m]
        if name == "plain":
            col = a * (0.94 + 0.1 * _fbm(mu * s, mv * s, mk))[:, None]
        elif name == "wood":
            warp = _fbm(mu * 1.5, mv * 6.0, mk)
            rings = 0.5 + 0.5 * torch.sin(2 * math.pi * (mv * s + 2.0 * warp))
            streaks = _value_noise(mu * 4.0, mv * 120.0, mk + 1)
            col = _lerp(a, b, rings**3) * (0.9 + 0.15 * streaks)[:, None]
        elif name == "planks":
            width = 1.0 / s  # plank width along v, staggered joints along u
            row = torch.floor(mv / width)
            ri = row.long()
            length = 1.2
            shift = _hash(ri, torch.zeros_like(ri), mk) * length
            col_i = torch.floor((mu + shift) / length).long()
            tone = 0.85 + 0.3 * _hash(ri, col_i, mk + 3)
            warp = _fbm(mu * 1.2, mv * 8.0, mk)
            rings = 0.5 + 0.5 * torch.sin(2 * math.pi * (mv * 25.0 + 1.5 * warp + 7 * _hash(ri, col_i, mk + 5)))
            col = _lerp(a, b, rings**3) * tone[:, None] * (0.92 + 0.12 * _value_noise(mu * 3, mv * 90, mk + 9))[:, None]
            fv = mv / width - row
            fu = (mu + shift) / length - torch.floor((mu + shift) / length)
            seam = (torch.minimum(fv, 1 - fv) * width < 0.003) | (torch.minimum(fu, 1 - fu) * length < 0.003)
            col = torch.where(seam[:, None], col * 0.55, col)
        elif name == "tiles":
            size = 1.0 / s
            iu, iv = torch.floor(mu / size), torch.floor(mv / size)
            odd = (iu + iv) % 2 == 1
            col = torch.where(odd[:, None], b, a) * (0.93 + 0.1 * _hash(iu.long(), iv.long(), mk))[:, None]
            fu, fv = mu / size - iu, mv / size - iv
            grout = torch.minimum(torch.minimum(fu, 1 - fu), torch.minimum(fv, 1 - fv)) * size < 0.004
            col = torch.where(grout[:, None], torch.full_like(col, 0.62), col)
        elif name == "stripes":
            phase = mu * s - torch.floor(mu * s)
            t = ((phase - 0.25).abs() < 0.25).float()
            col = _lerp(a, b, t) * (0.95 + 0.08 * _fbm(mu * 6, mv * 6, mk))[:, None]
        elif name == "fabric":
            t = _fbm(mu * s, mv * s, mk, octaves=4)
            col = _lerp(a, b, t) * (0.95 + 0.08 * _value_noise(mu * 150, mv * 150, mk + 2))[:, None]
        else:  # emissive
            col = a
        out[m] = col
    return out.clamp(0.0, 1.0)


_AMBIENT = 0.3
_LIGHT_POWER = 1.5
_LIGHT_FALLOFF = 2.5  # metres at which a light's irradiance halves


def shade(pk: PackedRoom, p: Tensor, normal: Tensor, albedo: Tensor, emissive: Tensor, shadows: bool) -> Tensor:
    """Linear radiance ``[n, 3]``: hemispherical ambient + Lambertian point lights, with AO darkening."""
    W, D, H = pk.size
    irradiance = _AMBIENT * (0.85 + 0.15 * normal[:, 2])  # sky-like: up-facing surfaces see more
    for lx, ly, lz, power in pk.lights.tolist():
        to_light = torch.tensor([lx, ly, lz]) - p
        dist = to_light.norm(dim=-1).clamp(min=1e-3)
        ndl = ((normal * to_light).sum(-1) / dist).clamp(min=0)
        contrib = _LIGHT_POWER * power * ndl / (1 + (dist / _LIGHT_FALLOFF) ** 2)
        if shadows:  # rays from the lit points below the light towards it
            light = torch.tensor([lx, ly, lz])
            lit = ((ndl > 0) & (p[:, 2] < lz - 1e-3)).nonzero()[:, 0]
            origin = p[lit] + 2e-3 * normal[lit]
            direction = to_light[lit] / dist[lit, None]
            screen = light_coords(light, origin)
            _, blocker = trace(pk, origin, direction, dist[lit] - 0.05, screen, light_rects(pk, light), pk.casters)
            visible = torch.ones_like(dist)
            visible[lit] = (blocker < 0).float()
            contrib = contrib * visible
        irradiance = irradiance + contrib
    # ambient occlusion: room edges and corners, the floor line, furniture footprints
    planes = torch.stack([p[:, 0] + W / 2, W / 2 - p[:, 0], p[:, 1] + D / 2, D / 2 - p[:, 1], p[:, 2], H - p[:, 2]], -1)
    on_plane = planes < 2e-3
    edge = torch.where(on_plane, torch.full_like(planes, math.inf), planes).amin(-1)
    ao = 1 - 0.3 * torch.exp(-edge / 0.25)
    ao = ao * (1 - 0.25 * torch.exp(-p[:, 2] / 0.08) * (1 - normal[:, 2].abs()))  # sides near the floor
    low = (p[:, 2] < 0.02).nonzero()[:, 0]  # the floor and rugs: contact shadows of the furniture
    if pk.footprints.numel() and low.numel():
        fp = pk.footprints
        rel = p[low, None, :2] - fp[:, :2]
        cs, sn = torch.cos(fp[:, 4]), torch.sin(fp[:, 4])
        lx = (cs * rel[..., 0] + sn * rel[..., 1]).abs() - fp[:, 2]
        ly = (-sn * rel[..., 0] + cs * rel[..., 1]).abs() - fp[:, 3]
        outside = torch.sqrt(lx.clamp(min=0) ** 2 + ly.clamp(min=0) ** 2)
        ao[low] = ao[low] * (1 - 0.45 * torch.exp(-outside / 0.12)).prod(-1)
    linear = (albedo**2.2) * (irradiance * ao)[:, None]
    return torch.where(emissive[:, None], albedo**2.2, linear)
