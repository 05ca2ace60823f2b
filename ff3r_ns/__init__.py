"""ff3r-ns: FF3R (arXiv 2604.09862) as a nerfstudio extension."""

__version__ = "0.1.0"
