"""Gathers what scripts/measure_inference.sh measured into docs/benchmarks/inference-large.json.

    python scripts/inference_table.py RESULTS_DIR [OLDER_RESULTS_DIR...] [--out docs/benchmarks/inference-large.json]

Rows: FF3R large and VGGT-1B's own code as its demo runs it, both with torch's attention backend choice, by view
count, with FF3R's stage times where profiled. Each row comes from the first folder that measured both sides at
that view count (one call, one GPU: the ratio never mixes runs), named in the row's ``measured_in``; accuracy
comes from the first folder. Accuracy: each bf16 path against its own float32 pass
(scripts/measure_precision.py), or why it is absent. Prints the table as markdown for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows_by_views(results: Path, stem: str) -> dict[int, dict]:
    """Rows of one benchmark JSON (``{gpu}-{stem}.json``), by view count; empty if that step did not run."""
    found = sorted(results.glob(f"*-{stem}.json"))
    if not found:
        return {}
    return {r["views"]: r for r in json.loads(found[0].read_text())["rows"] if r.get("seconds") is not None}


def merged(results: Path, *stems: str) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    for stem in stems:
        rows.update(rows_by_views(results, stem))
    return rows


def accuracy_of(precision: dict) -> dict:
    """Our mixed path and VGGT's autocast, each against its own float32 pass, from measure_precision.py's JSON."""
    ours, theirs = precision["ff3r-mixed"], precision["vggt-autocast"]
    keys = ["depth_rel_err", "pose_enc_max_abs_err", "means_voxel_err"]
    keys += ["depth_spread_err"] if "depth_spread_err" in ours else []  # written since 2026-12-08
    h, w = precision["image_hw"]
    out = {"views": f"{precision['views']} real views ({precision['scene']}), {h}x{w}, the same random weights on both "
           f"sides, every parameter moved by {precision.get('perturb', 0.1)} of its spread"}  # fmt: skip
    for key in keys:
        out[f"ff3r_{key}"], out[f"vggt_{key}"] = ours[key], theirs[key]
    return {**out, "all_paths": precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="OUT_DIRs of scripts/measure_inference.sh, newest first")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/inference-large.json"))
    args = parser.parse_args()

    metas = {folder: json.loads(next(folder.glob("*-vggt1b-reference.json")).read_text())["meta"] for folder in args.results}
    measured = [(folder, merged(folder, "large", "large-scale"), merged(folder, "vggt1b-reference", "vggt1b-scale"))
                for folder in args.results]  # fmt: skip
    rows = []
    for views in sorted({v for _, ff3r, vggt in measured for v in set(ff3r) & set(vggt)}):
        folder, ff3r, vggt = next(m for m in measured if views in m[1] and views in m[2])
        f, v = ff3r[views], vggt[views]
        row = {
            "views": views,
            "seconds": f["seconds"],
            "vggt_seconds": v["seconds"],
            "peak_gib": f.get("peak_gib"),
            "vggt_peak_gib": v.get("peak_gib"),
            "ratio": round(f["seconds"] / v["seconds"], 3),
            "measured_in": folder.name,
            "gpu": metas[folder]["device"],
        }
        if "stage_ms" in f:
            row["stage_ms"] = f["stage_ms"]
        compiled = rows_by_views(folder, "large-compiled").get(views)
        if compiled:
            row["compiled_seconds"] = compiled["seconds"]
        rows.append(row)

    newest = args.results[0]
    precision_file = newest / "precision-8.json"
    if not precision_file.is_file():  # the step failed or ran out of time: say so rather than leave a gap
        accuracy = {"measured": False, "why": f"{precision_file.name} is absent: measure_precision.py did not finish "
                    "(its log is in the results folder)"}  # fmt: skip
    else:
        accuracy = accuracy_of(json.loads(precision_file.read_text()))
        strong = newest / "precision-8-strong.json"
        if strong.is_file():  # the same with every parameter moved by its whole spread
            accuracy["strongly_perturbed"] = accuracy_of(json.loads(strong.read_text()))
    meta = metas[newest]
    document = {"gpu": meta["device"], "torch": meta["torch"], "rows": rows, "accuracy": accuracy}  # the newest run's
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}\n")
    print("| views | FF3R large | VGGT-1B | ratio | FF3R peak | VGGT peak | measured in |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            f"{r['seconds']:.3f} s" if r["seconds"] else "-",
            f"{r['vggt_seconds']:.3f} s" if r["vggt_seconds"] else "-",
            f"{r['ratio']:.2f}" if "ratio" in r else "-",
            f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] else "-",
            f"{r['vggt_peak_gib']:.1f} GiB" if r["vggt_peak_gib"] else "-",
            f"{r['measured_in']} ({r['gpu']})",
        ]
        print(f"| {r['views']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
