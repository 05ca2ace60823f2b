"""Export an ``ns-train ff3r`` run's Gaussians with their semantics: a 3DGS PLY and a feature file.

    python scripts/export_semantics.py --load-config RUN/config.yml --queries "chair;table" [--output-dir DIR]

Writes ``DIR/splat.ply`` (what ``ns-export gaussian-splat`` writes, plus the low-dimensional semantic
feature as ``sem_*`` vertex properties) and ``DIR/splat.semantics.npz`` (row i = PLY vertex i): the
512-d lifted features, the lifting layer, and with ``--queries`` each Gaussian's label, the index of the
query of highest cosine (file layout: ``ff3r_ns.ns.export.export_semantics``).

Queries are embedded by CLIP ViT-B/32's text tower (``--text-encoder``, default the run's
``text_encoder_weights``); on a synthetic room, class names are embedded in its teacher's text space
(``class_embeddings()``) without any weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of an ns-train ff3r run")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write (default: RUN/exports)")
    parser.add_argument("--queries", default="", help="text prompts separated by ';' to label every Gaussian with")
    parser.add_argument(
        "--text-encoder", default=None, help="CLIP ViT-B/32 weights file for the queries (default: the run's setting)"
    )
    args = parser.parse_args(argv)

    # nerfstudio imports take seconds: only after the arguments are known to be fine.
    from nerfstudio.utils.eval_utils import eval_setup

    from ff3r_ns.data.synthetic import CLASS_NAMES
    from ff3r_ns.network.semantic import TextEncoder
    from ff3r_ns.ns.export import export_semantics, write_gaussian_ply
    from ff3r_ns.ns.model import FF3RModel, parse_prompts
    from ff3r_ns.ns.reconstruct import SyntheticTextSpace, is_synthetic_room

    if not args.load_config.is_file():
        parser.error(f"{args.load_config} does not exist; pass the config.yml of an ns-train ff3r run")
    config, pipeline, _, _ = eval_setup(args.load_config, test_mode="inference")
    model = pipeline.model
    if not isinstance(model, FF3RModel):
        parser.error(f"{args.load_config} is a {config.method_name} run; this script exports ns-train ff3r runs")
    queries = parse_prompts(args.queries)
    encoder = None
    if queries:
        data = Path(config.pipeline.datamanager.dataparser.data)
        if args.text_encoder is not None:
            encoder = TextEncoder(weights=args.text_encoder).eval()
        elif is_synthetic_room(data) and all(query in CLASS_NAMES for query in queries):
            encoder = SyntheticTextSpace()
        else:
            try:
                encoder = TextEncoder(weights=model.config.text_encoder_weights).eval()
            except FileNotFoundError as error:
                print(
                    f"error: no text encoder for the queries; pass its weights with --text-encoder FILE. {error}",
                    file=sys.stderr,
                )
                return 2

    out_dir = args.output_dir or config.get_base_dir() / "exports"
    out_dir.mkdir(parents=True, exist_ok=True)
    ply = out_dir / "splat.ply"
    write_gaussian_ply(model, ply, with_semantic=True)
    npz = export_semantics(model, None, ply, queries=queries or None, text_encoder=encoder)
    print(f"wrote {ply} and {npz}")
    if queries:
        labels = np.load(npz)["labels"]
        counts = np.bincount(labels, minlength=len(queries))
        print("Gaussians per query: " + ", ".join(f"{q}: {int(c)}" for q, c in zip(queries, counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
