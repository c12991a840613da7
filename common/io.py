"""Atomic file writes and file-name slugs: the one writer every module uses for results, tables,
reports, manifests and caches, so a reader never sees a half-written file."""
from __future__ import annotations

import os
import re
import tempfile
from typing import Callable, Union

Content = Union[bytes, str, Callable]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, content: Content, *, encoding: str = "utf-8") -> str:
    """Write ``content`` to ``path`` atomically and return ``path``.

    ``content`` is bytes, text (written with ``encoding``) or a callable ``write(binary_handle)``.
    The data go to a temporary file in the same folder, are flushed to disk and then renamed over
    ``path`` (``os.replace``), so ``path`` holds either its old or its new content, never a part.
    The file gets the permissions an ordinary ``open`` would give (0666 minus the umask), so a
    store shared by a lab's users stays readable to them; on any error the temporary is removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode(encoding) if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def file_slug(text: str) -> str:
    """A file-name-safe form of ``text`` (dataset names such as ``features:my.npz``, method specs):
    letters, digits and ``_ . = -`` are kept, every other run of characters becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(text)).strip("_") or "_"
