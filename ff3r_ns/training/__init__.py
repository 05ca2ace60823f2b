"""Annotation-free training: losses, warping, teachers."""
