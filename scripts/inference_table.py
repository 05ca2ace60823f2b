"""Gathers what scripts/measure_inference.sh measured into docs/benchmarks/inference-large.json.

    python scripts/inference_table.py RESULTS_DIR [--out docs/benchmarks/inference-large.json]

Rows: FF3R large and VGGT-1B's own code as its demo runs it, both with torch's attention backend choice, by view
count, with FF3R's stage times where profiled. Accuracy: each bf16 path against its own float32 pass
(scripts/measure_precision.py), or why it is absent. Prints the table as markdown for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional


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


def value(row: Optional[dict], key: str) -> Optional[float]:
    return None if row is None else row.get(key)


def accuracy_of(precision: dict) -> dict:
    """Our mixed path and VGGT's autocast, each against its own float32 pass, from measure_precision.py's JSON."""
    ours, theirs = precision["ff3r-mixed"], precision["vggt-autocast"]
    return {
        "views": "8 real views (TUM fr3 long office), long side 448, same perturbed random weights on both sides",
        "ff3r_depth_rel_err": ours["depth_rel_err"],
        "vggt_depth_rel_err": theirs["depth_rel_err"],
        "ff3r_pose_enc_max_abs_err": ours["pose_enc_max_abs_err"],
        "vggt_pose_enc_max_abs_err": theirs["pose_enc_max_abs_err"],
        "ff3r_means_voxel_err": ours["means_voxel_err"],
        "vggt_means_voxel_err": theirs["means_voxel_err"],
        "all_paths": precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="OUT_DIR of scripts/measure_inference.sh")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/inference-large.json"))
    args = parser.parse_args()

    ff3r = merged(args.results, "large", "large-scale")
    vggt = merged(args.results, "vggt1b-reference", "vggt1b-scale")
    rows = []
    for views in sorted(set(ff3r) | set(vggt)):
        f, v = ff3r.get(views), vggt.get(views)
        row = {
            "views": views,
            "seconds": value(f, "seconds"),
            "vggt_seconds": value(v, "seconds"),
            "peak_gib": value(f, "peak_gib"),
            "vggt_peak_gib": value(v, "peak_gib"),
        }
        if row["seconds"] and row["vggt_seconds"]:
            row["ratio"] = round(row["seconds"] / row["vggt_seconds"], 3)
        if f and "stage_ms" in f:
            row["stage_ms"] = f["stage_ms"]
        rows.append(row)

    precision_file = args.results / "precision-8.json"
    if not precision_file.is_file():  # the step failed or ran out of time: say so rather than leave a gap
        accuracy = {"measured": False, "why": f"{precision_file.name} is absent: measure_precision.py did not finish "
                    "(its log is in the results folder)"}  # fmt: skip
    else:
        accuracy = accuracy_of(json.loads(precision_file.read_text()))
    meta = json.loads(next(args.results.glob("*-vggt1b-reference.json")).read_text())["meta"]
    document = {"gpu": meta["device"], "torch": meta["torch"], "rows": rows, "accuracy": accuracy}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}\n")
    print("| views | FF3R large | VGGT-1B | ratio | FF3R peak | VGGT peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            f"{r['seconds']:.3f} s" if r["seconds"] else "-",
            f"{r['vggt_seconds']:.3f} s" if r["vggt_seconds"] else "-",
            f"{r['ratio']:.2f}" if "ratio" in r else "-",
            f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] else "-",
            f"{r['vggt_peak_gib']:.1f} GiB" if r["vggt_peak_gib"] else "-",
        ]
        print(f"| {r['views']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
