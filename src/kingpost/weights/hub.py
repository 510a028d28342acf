"""List a Hugging Face repository's files through ``huggingface_hub`` (HF_ENDPOINT, HF_TOKEN honoured).

Only the listing and the URLs come from ``huggingface_hub``; the bytes go through kingpost's one
downloader, so Hub files are resumed, verified (LFS files by their sha256, the others by their
git blob id, which is what the Hub's etag is) and stored like every other file.
"""

from __future__ import annotations

from typing import Any

from kingpost.errors import FetchError
from kingpost.weights.download import FileRequest
from kingpost.weights.sources import Source


def hub() -> Any:
    try:
        import huggingface_hub
    except ModuleNotFoundError:
        raise FetchError("Hugging Face sources need huggingface_hub: pip install 'kingpost[hf]'.") from None
    return huggingface_hub


def list_files(source: Source, token: str | None) -> tuple[str, list[FileRequest]]:
    """(the commit the revision resolved to, one request per file the patterns keep)."""
    hf = hub()
    api = hf.HfApi(token=token or None)
    try:
        info = api.model_info(source.location, revision=source.revision or None, files_metadata=True)
    except Exception as exc:
        raise FetchError(f"{source.key}: the Hugging Face repository {source.location!r}"
                         f"{'@' + source.revision if source.revision else ''} could not be listed at "
                         f"{api.endpoint} ({_reason(exc)}).") from exc
    commit = info.sha or source.revision or "main"
    siblings = list(hf.utils.filter_repo_objects(
        info.siblings or [], allow_patterns=list(source.allow_patterns or []) or None,
        ignore_patterns=list(source.ignore_patterns or []) or None, key=lambda s: s.rfilename))
    headers = hf.utils.build_hf_headers(token=token or None, library_name="kingpost",
                                       library_version=_version())
    requests = []
    for sibling in siblings:
        lfs = sibling.lfs
        requests.append(FileRequest(
            key=source.key, label=sibling.rfilename, headers=dict(headers),
            url=hf.hf_hub_url(source.location, sibling.rfilename, revision=commit),
            size=lfs.size if lfs else sibling.size, sha256=lfs.sha256 if lfs else None,
            git_sha1=None if lfs else sibling.blob_id))
    return commit, requests


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if status == 404:
        return "404: no such repository or revision"
    if status in (401, 403):
        return f"{status}: a private or gated repository needs a token (the hf_access_token secret or HF_TOKEN)"
    return first.rstrip(".")


def _version() -> str:
    from kingpost._version import __version__

    return __version__
