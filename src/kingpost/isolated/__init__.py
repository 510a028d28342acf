"""Isolated environments: a virtual environment built from a bundle's own requirements, cached on disk."""
