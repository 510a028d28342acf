"""Weights and data a bundle declares instead of shipping: ``model_cache``, ``weights``, ``external_data``.

One downloader for all three (``download``), one content-addressed cache shared by bundles
(``store``), sources parsed from config.yaml (``sources``), the Hugging Face Hub through
``huggingface_hub`` (``hub``), object stores through their SDKs (``cloud``), and Truss's
``lazy_data_resolver`` (``lazy``). ``fetch.Fetcher`` ties them together.
"""

from __future__ import annotations

from kingpost.weights.download import Progress
from kingpost.weights.fetch import Fetched, Fetcher, fetch_bundle
from kingpost.weights.lazy import LazyDataResolver
from kingpost.weights.sources import Source, sources
from kingpost.weights.store import cache_root

__all__ = ["Fetched", "Fetcher", "LazyDataResolver", "Progress", "Source", "cache_root", "fetch_bundle", "sources"]
