"""The FF3R network in plain PyTorch (no nerfstudio import)."""
