"""Markdown tables laid out like the paper's Tables 1, 2 and 5, our rows beside the paper's numbers.

Input: the per-scene results that ``scripts/evaluate.py`` writes (one JSON per scene and protocol, see
:func:`scene_record`). Our row of a setting is the mean over the scenes evaluated with it; a cell is "–"
where no scene could compute the metric (the reasons are listed under the tables). Sparse settings score
segmentation against the scenes' labels (``miou``, ``accuracy``: ScanNet in the paper); dense settings
against LSeg's pseudo-labels (``miou_lseg_pseudo``: DL3DV in the paper), each as the paper does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ff3r_ns.eval.paper_tables import DATASETS, TABLE_1, TABLE_2, TABLE_5, Cells

SPARSE = ("sparse-2", "sparse-6", "sparse-16")
DENSE = ("dense-32", "dense-48", "dense-64")
NVS_TITLES = ("PSNR↑", "SSIM↑", "LPIPS↓", "mIoU↑", "Acc.↑", "Time(s)↓")


def scene_record(scene: str, path: str, protocol: str, results: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The JSON of one scene under one protocol: its name, path, protocol, metrics (with ``absent``) and
    anything else the runner adds (weights, device, per-scene seconds)."""
    return {"scene": scene, "path": path, "protocol": protocol, "results": results, **extra}


def load_records(folder: Path) -> list[dict[str, Any]]:
    """Every per-scene JSON under ``folder`` (``<protocol>/<scene>.json``), in path order."""
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*/*.json"))]


def _mean(records: Sequence[dict], key: str) -> Optional[float]:
    values = [r["results"][key] for r in records if isinstance(r["results"].get(key), (int, float))]
    values = [v for v in values if math.isfinite(v) or v == math.inf]
    return float(np.mean(values)) if values else None


def _cell(value: Optional[float], fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def our_nvs_cells(records: Sequence[dict], pseudo: bool) -> tuple[str, ...]:
    """Our PSNR, SSIM, LPIPS, mIoU, Acc, Time cells (means over ``records``)."""
    miou, accuracy = ("miou_lseg_pseudo", "accuracy_lseg_pseudo") if pseudo else ("miou", "accuracy")
    time = _mean(records, "time_seconds")
    return (
        _cell(_mean(records, "psnr"), "{:.2f}"),
        _cell(_mean(records, "ssim"), "{:.3f}"),
        _cell(_mean(records, "lpips"), "{:.3f}"),
        _cell(_mean(records, miou), "{:.3f}"),
        _cell(_mean(records, accuracy), "{:.3f}"),
        "–" if time is None else f"{time:.3g}s",
    )


def _by_protocol(records: Iterable[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in records:
        if "results" in record:  # skipped scenes carry only their reason
            grouped.setdefault(record["protocol"], []).append(record)
    return grouped


def _paper_cells(cells: Optional[Cells], width: int) -> tuple[str, ...]:
    return tuple("–" if c is None else c for c in cells) if cells is not None else ("",) * width


def _grid(
    settings: Sequence[str], titles: Sequence[str], paper: dict[str, dict[str, Cells]], ours: dict[str, tuple[str, ...]]
) -> list[str]:
    """Rows: one per paper method (in the paper's order), then ours; columns: titles per setting."""
    methods: list[str] = []
    for setting in settings:
        methods += [m for m in paper.get(setting, {}) if m not in methods]
    header = "| method | " + " | ".join(f"{s} {t}" for s in settings for t in titles) + " |"
    lines = [header, "|---" * (1 + len(settings) * len(titles)) + "|"]
    for method in methods:
        cells = [c for s in settings for c in _paper_cells(paper.get(s, {}).get(method), len(titles))]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    cells = [c for s in settings for c in ours.get(s, ("not run",) + ("",) * (len(titles) - 1))]
    lines.append("| **ours (this run)** | " + " | ".join(cells) + " |")
    return lines


def _counts(grouped: dict[str, list[dict]], settings: Sequence[str]) -> str:
    parts = [f"{s}: {len(grouped[s])} scene(s) ({', '.join(r['scene'] for r in grouped[s])})" for s in settings if s in grouped]
    return "Our rows: " + ("; ".join(parts) if parts else "no scene evaluated with these settings") + "."


def table_1(records: Sequence[dict]) -> str:
    """Table 1: sparse (labels) and dense (LSeg pseudo-labels) novel views and segmentation."""
    grouped = _by_protocol(records)
    lines = [f"### Table 1, sparse views (paper: {DATASETS['table_1_sparse']}; mIoU/Acc against the labels)", ""]
    lines += _grid(SPARSE, NVS_TITLES, TABLE_1, {s: our_nvs_cells(grouped[s], False) for s in SPARSE if s in grouped})
    lines += ["", _counts(grouped, SPARSE), ""]
    lines += [f"### Table 1, dense views (paper: {DATASETS['table_1_dense']}; mIoU/Acc against LSeg pseudo-labels)", ""]
    lines += _grid(DENSE, NVS_TITLES, TABLE_1, {s: our_nvs_cells(grouped[s], True) for s in DENSE if s in grouped})
    lines += ["", _counts(grouped, DENSE)]
    return "\n".join(lines)


def table_2(records: Sequence[dict]) -> str:
    """Table 2: depth consistency, Rel and tau in percent, 2 and 6 views."""
    grouped = _by_protocol(records)
    settings = ("sparse-2", "sparse-6")
    ours = {}
    for s in settings:
        if s in grouped:
            rel, tau = _mean(grouped[s], "depth_abs_rel"), _mean(grouped[s], "depth_inlier_ratio_1.03")
            ours[s] = (_cell(None if rel is None else 100 * rel, "{:.2f}"), _cell(None if tau is None else 100 * tau, "{:.2f}"))
    lines = [f"### Table 2, depth consistency (paper: {DATASETS['table_2']}; Rel and τ in %)", ""]
    lines += _grid(settings, ("Rel↓", "τ↑"), TABLE_2, ours)
    lines += ["", _counts(grouped, settings)]
    return "\n".join(lines)


def table_5(records: Sequence[dict]) -> str:
    """Table 5: against Uni3R, 2 and 16 views."""
    grouped = _by_protocol(records)
    settings = ("sparse-2", "sparse-16")
    lines = [f"### Table 5, against Uni3R (paper: {DATASETS['table_5']})", ""]
    lines += _grid(settings, NVS_TITLES, TABLE_5, {s: our_nvs_cells(grouped[s], False) for s in settings if s in grouped})
    lines += ["", _counts(grouped, settings)]
    return "\n".join(lines)


PER_SCENE = (
    ("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("lpips", "LPIPS", "{:.3f}"),
    ("context_psnr", "ctx PSNR", "{:.2f}"), ("miou", "mIoU", "{:.3f}"), ("miou_lseg_pseudo", "mIoU (LSeg)", "{:.3f}"),
    ("depth_abs_rel", "AbsRel", "{:.3f}"), ("depth_inlier_ratio_1.03", "τ", "{:.3f}"),
    ("pose_rotation_deg_mean", "rot. err °", "{:.1f}"), ("time_seconds", "forward s", "{:.2f}"),
    ("scene_seconds", "scene s", "{:.0f}"),
)  # fmt: skip
"""Columns of the per-scene table (not in the paper): key, title, format."""


def per_scene_table(records: Sequence[dict]) -> str:
    """One row per scene and protocol, skipped scenes with their reason."""
    lines = ["| scene | protocol | ctx/tgt | " + " | ".join(t for _, t, _ in PER_SCENE) + " |"]
    lines.append("|---" * (3 + len(PER_SCENE)) + "|")
    for r in records:
        if "results" not in r:
            lines.append(f"| {r['scene']} | {r['protocol']} | skipped: {r.get('skipped', '?')} |" + " |" * len(PER_SCENE))
            continue
        res = {**r["results"], "scene_seconds": r.get("scene_seconds")}
        views = f"{res.get('num_context_views', '?')}/{res.get('num_target_views', '?')}"
        cells = [_cell(res.get(k) if isinstance(res.get(k), (int, float)) else None, f) for k, _, f in PER_SCENE]
        lines.append(f"| {r['scene']} | {r['protocol']} | {views} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def absent_reasons(records: Sequence[dict]) -> str:
    """Each metric left out somewhere, with the distinct reasons and the scenes they apply to."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for r in records:
        for key, why in r.get("results", {}).get("absent", {}).items():
            reasons.setdefault((key, why), []).append(f"{r['scene']} ({r['protocol']})")
    if not reasons:
        return "Every metric was computed on every scene."
    return "\n".join(f"- `{key}`: {why} — {', '.join(where)}" for (key, why), where in sorted(reasons.items()))


def markdown_report(records: Sequence[dict], title: str = "FF3R evaluation") -> str:
    """Tables 1, 2 and 5 with the paper's numbers, the per-scene table and the reasons of absent metrics."""
    return "\n\n".join(
        [
            f"## {title}",
            table_1(records),
            table_2(records),
            table_5(records),
            "### Per scene",
            per_scene_table(records),
            "### Metrics not computed, and why",
            absent_reasons(records),
        ]
    ) + "\n"
