"""Metrics, evaluation protocols and pose alignment."""
