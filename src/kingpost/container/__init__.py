"""Containers: a deterministic build context for a bundle, and the image built from it."""
