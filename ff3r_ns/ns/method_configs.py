"""nerfstudio entry points (see pyproject.toml): ``ns-train ff3r`` and ``ns-train ff3r-train``."""

from ff3r_ns.ns.reconstruct import ff3r_method
from ff3r_ns.ns.train import ff3r_train_method

__all__ = ["ff3r_method", "ff3r_train_method"]
