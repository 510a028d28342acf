"""Packaging: isolated environments, container build contexts and images."""
