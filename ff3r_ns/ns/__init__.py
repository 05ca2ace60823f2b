"""Thin nerfstudio adapters: method configs, dataparsers, datamanager, model, pipeline."""
