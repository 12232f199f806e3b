"""Atomic file writes (write to a temporary file in the same folder, then rename over the target), and the
forgiving read of a JSON record."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from core.errors import UserError


def _umask() -> int:
    """The process umask (read by setting and restoring it: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it to `path`, on error remove it.

    Raises:
        UserError: the folder cannot be created or written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; the target gets what open() would give it
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when the file is missing, unreadable or holds no object (a record
    that is not there yet, or a damaged one: nothing is on record in it)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_failure(err: BaseException, where: str | Path) -> str | None:
    """One sentence naming a failed write under `where` for what it is (a full disk, a quota, a read-only
    file system), or None when `err` is not a write failure. A trial's reason then says what to fix instead of
    quoting torch's `enforce fail at inline_container.cc ... unexpected pos` (what a full disk looks like when
    `torch.save` hits it: the errno is lost inside its C++ stream)."""
    import errno
    import shutil

    seen, chain = set(), err
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        code = getattr(chain, "errno", None)
        if code in (errno.ENOSPC, errno.EDQUOT):
            what = "no space left" if code == errno.ENOSPC else "the disk quota is exhausted"
            return f"{what} on the device of {where} ({os.strerror(code)}): free space or use another --run-dir"
        if code == errno.EROFS:
            return f"{where} is on a read-only file system: use another --run-dir"
        chain = chain.__cause__ or chain.__context__
    if "inline_container.cc" in str(err) and "unexpected pos" in str(err):
        try:
            free = f"{shutil.disk_usage(where).free / 2**20:,.0f} MiB free there now"
        except OSError:
            free = "its free space unknown"
        return (f"a checkpoint or sample write under {where} stopped short (torch: {str(err).strip()[:80]}); "
                f"a full disk does this ({free}): free space or use another --run-dir")
    return None
