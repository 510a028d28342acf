"""A wheel of the running kingpost, so a build context installs exactly this code, offline.

The wheel is repacked from what is imported (the ``kingpost`` package directory, whether an
editable checkout or site-packages) and the installed distribution's METADATA and entry points.
No build backend and no network are needed, and the bytes depend only on the files: entries are
sorted, every timestamp is :data:`FIXED_MTIME` and every mode is 0644.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

from kingpost.errors import PackagingError

FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_WHEEL = "Wheel-Version: 1.0\nGenerator: kingpost (repacked from the running installation)\n" \
         "Root-Is-Purelib: true\nTag: py3-none-any\n"


def kingpost_wheel_name() -> str:
    return f"kingpost-{_distribution().version}-py3-none-any.whl"


def write_kingpost_wheel(directory: Path) -> Path:
    """Write ``kingpost-<version>-py3-none-any.whl`` of the running kingpost into ``directory``."""
    dist = _distribution()
    dist_info = f"kingpost-{dist.version}.dist-info"
    package = Path(__file__).parent.parent  # the kingpost package directory
    entries: list[tuple[str, bytes]] = [
        (f"kingpost/{path.relative_to(package).as_posix()}", path.read_bytes()) for path in _package_files(package)
    ]
    meta = dist.read_text("METADATA")
    if meta is None:
        raise PackagingError("the installed kingpost has no METADATA; reinstall it (pip install kingpost).")
    entries.append((f"{dist_info}/METADATA", meta.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    for file in dist.files or ():
        if file.as_posix().startswith(f"{dist_info}/licenses/"):
            entries.append((file.as_posix(), Path(str(file.locate())).read_bytes()))
    entries.append((f"{dist_info}/WHEEL", _WHEEL.encode()))
    entries.sort()
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))

    target = directory / kingpost_wheel_name()
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=6)
    return target


def _distribution() -> metadata.Distribution:
    try:
        return metadata.distribution("kingpost")
    except metadata.PackageNotFoundError:
        raise PackagingError("kingpost is imported but not installed as a distribution; "
                             "install it (pip install -e .) to write build contexts.") from None


def _package_files(package: Path) -> list[Path]:
    return sorted(
        path for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
        and not any(part.startswith(".") for part in path.relative_to(package).parts)
    )


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
