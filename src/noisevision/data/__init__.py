"""Datasets on disk: image encoding, folder layout, manifests, the resumable writer and verify."""
