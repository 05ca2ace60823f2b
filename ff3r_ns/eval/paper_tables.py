"""The paper's own numbers (arXiv 2604.09862), cell by cell as printed, with their table and row.

Cells are strings exactly as the paper prints them (times with their unit, "OOM"); None is the paper's "–".
Columns of Tables 1 and 5: PSNR, SSIM, LPIPS, mIoU, Acc, Time. Table 2: Rel and tau, both in percent.

Table 1 (sparse) is ScanNet with its annotations; Table 1 (dense) is DL3DV-10K, whose mIoU/Acc are against
LSeg's pseudo-labels (Appendix A, after Feature-3DGS). Table 5 is ScanNet.

Note: in Table 5 the paper's "Ours, 16 Views" cells (22.19 0.769 0.295 0.500 0.751 1.2s) are those of
Table 1's 6-view column, not its 16-view column (22.58 0.790 0.293 0.492 0.739 2.2s); both are kept as printed.
"""

from __future__ import annotations

from typing import Optional

Cells = tuple[Optional[str], ...]

NVS_COLUMNS = ("psnr", "ssim", "lpips", "miou", "accuracy", "time")
"""Columns of Tables 1 and 5, in the paper's order."""
DEPTH_COLUMNS = ("abs_rel_percent", "inlier_percent")
"""Columns of Table 2: Rel (AbsRel x 100) and tau (inlier ratio at 1.03, x 100)."""

TABLE_1: dict[str, dict[str, Cells]] = {
    # Table 1, upper half, "ScanNet [3] Dataset", columns "2 Views", "6 Views", "16 Views".
    "sparse-2": {
        "LSeg": (None, None, None, "0.543", "0.810", None),
        "Feature-3DGS": ("17.54", "0.673", "0.437", "0.332", "0.662", "18min"),
        "LSM": ("14.95", "0.589", "0.401", "0.424", "0.739", "0.408s"),
        "FF3R (paper)": ("22.70", "0.787", "0.285", "0.486", "0.754", "0.884s"),
    },
    "sparse-6": {
        "LSeg": (None, None, None, "0.551", "0.804", None),
        "Feature-3DGS": ("18.34", "0.695", "0.430", "0.330", "0.661", "18min"),
        "LSM": ("14.50", "0.580", "0.438", "0.392", "0.708", "16.3s"),
        "FF3R (paper)": ("22.19", "0.769", "0.295", "0.500", "0.751", "1.2s"),
    },
    "sparse-16": {
        "LSeg": (None, None, None, "0.540", "0.800", None),
        "Feature-3DGS": ("19.12", "0.713", "0.419", "0.349", "0.648", "18min"),
        "LSM": ("OOM", "OOM", "OOM", "OOM", "OOM", "OOM"),
        "FF3R (paper)": ("22.58", "0.790", "0.293", "0.492", "0.739", "2.2s"),
    },
    # Table 1, lower half, "DL3DV-10K [20] Dataset", columns "32 Views", "48 Views", "64 Views".
    "dense-32": {
        "Feature-3DGS": ("17.42", "0.588", "0.376", "0.196", "0.494", "30min"),
        "AnySplat": ("18.02", "0.561", "0.375", None, None, "1.4s"),
        "FF3R (paper)": ("18.56", "0.577", "0.377", "0.484", "0.800", "3.1s"),
    },
    "dense-48": {
        "Feature-3DGS": ("18.52", "0.611", "0.448", "0.225", "0.516", "30min"),
        "AnySplat": ("19.18", "0.603", "0.363", None, None, "2.7s"),
        "FF3R (paper)": ("19.31", "0.606", "0.377", "0.514", "0.836", "6.1s"),
    },
    "dense-64": {
        "Feature-3DGS": ("18.48", "0.618", "0.424", "0.230", "0.508", "30min"),
        "AnySplat": ("19.58", "0.609", "0.342", None, None, "4.1s"),
        "FF3R (paper)": ("19.31", "0.608", "0.365", "0.521", "0.821", "9.3s"),
    },
}
"""Table 1: novel views and segmentation; setting -> method -> cells in ``NVS_COLUMNS`` order."""

TABLE_2: dict[str, dict[str, Cells]] = {
    # Table 2, "Comparison of depth consistency", columns "2 Views", "6 Views": Rel, tau.
    "sparse-2": {"LSM": ("7.36", "46.24"), "FF3R (paper)": ("3.99", "67.99")},
    "sparse-6": {"LSM": ("8.38", "38.65"), "FF3R (paper)": ("3.36", "71.10")},
}
"""Table 2: depth consistency; setting -> method -> cells in ``DEPTH_COLUMNS`` order."""

TABLE_5: dict[str, dict[str, Cells]] = {
    # Table 5 (Appendix B), ScanNet, columns "2 Views", "16 Views".
    "sparse-2": {
        "Uni3R": ("15.57", "0.649", "0.448", "0.354", "0.716", "0.626s"),
        "FF3R (paper)": ("22.70", "0.787", "0.285", "0.486", "0.754", "0.884s"),
    },
    "sparse-16": {
        "Uni3R": ("17.98", "0.737", "0.402", "0.437", "0.769", "0.928s"),
        "FF3R (paper)": ("22.19", "0.769", "0.295", "0.500", "0.751", "1.2s"),
    },
}
"""Table 5: against Uni3R; setting -> method -> cells in ``NVS_COLUMNS`` order."""

DATASETS = {"table_1_sparse": "ScanNet", "table_1_dense": "DL3DV-10K", "table_2": "not stated in the paper", "table_5": "ScanNet"}
"""What the paper evaluated each table on."""
