"""The storage folder: adapted weights and support sets, written atomically.

Layout under ``data_dir``::

    adaptations/<id>/support.safetensors   validated support tiles (input of the job)
    adaptations/<id>/adapted.bundle        the adapted model bundle (output of the job)
    tmp/<random>/                          staging area of requests in flight
    STORAGE_ID                             random id naming this storage (see below)

Replicas share one storage folder (a shared volume: NFS, EFS, a Kubernetes
ReadWriteMany volume, or one host's folder mounted into every container). A job queued by
one replica is run by whichever replica claims it, and a prediction may reach any replica,
so every replica must see the same files. :meth:`Store.storage_id` names the folder; the
service records the first id it sees in the database (:mod:`api.app`), and a replica whose
folder carries another id is not ready (``/ready`` answers 503 and says why), claims no job
and accepts no upload, instead of losing work.

Paths are built only from ids the service generated (32 hex digits), never from file names
a client sent. Every file is written to a temporary name in the same folder, flushed and
fsynced, then renamed over its final name, so a reader sees either nothing or a whole file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from landcover.inference.bundle import shared_file_mode

_ID = re.compile(r"^[0-9a-f]{32}$")


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it over ``final`` on success.

    The caller writes the temporary file (any writer that takes a path). On an exception the
    temporary file is removed and ``final`` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, shared_file_mode())  # mkstemp makes 0600; bundles are read by others
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Store:
    """The service's storage folder.

    Args:
        root: The data folder (created if missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "adaptations").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def storage_id(self) -> str:
        """The random id of this storage folder (created on first use, never changed).

        The id file is written whole under a temporary name and hard-linked to
        ``STORAGE_ID``: the link either creates the final name with its full content or
        fails because another replica (or thread) linked its own first, so no reader ever
        sees an empty or partial id.

        Raises:
            ValueError: ``STORAGE_ID`` exists but does not hold a 32-hex-digit id (a
                file edited or truncated by hand); the message says how to repair it.
        """
        path = self.root / "STORAGE_ID"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(prefix=".storage_id.", dir=self.root)
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(uuid.uuid4().hex + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                # FileExistsError: another replica created it first, so use theirs
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
        value = path.read_text().strip()
        if not _ID.fullmatch(value):
            raise ValueError(
                f"{path} holds {value!r}, not a storage id (32 hex digits): restore it from "
                "another replica's copy of the shared volume, or delete it if this folder "
                "is the only storage and the database is new"
            )
        return value

    def folder(self, adaptation_id: str) -> Path:
        """The folder of one adaptation (``adaptation_id`` must be a service-made id)."""
        if not _ID.match(adaptation_id):
            raise ValueError(f"not a service-generated adaptation id: {adaptation_id!r}")
        return self.root / "adaptations" / adaptation_id

    def support_path(self, adaptation_id: str) -> Path:
        """Where the validated support set of an adaptation is kept."""
        return self.folder(adaptation_id) / "support.safetensors"

    def bundle_path(self, adaptation_id: str) -> Path:
        """Where the adapted bundle of an adaptation is kept."""
        return self.folder(adaptation_id) / "adapted.bundle"

    def save_support(
        self, adaptation_id: str, images: list[np.ndarray], masks: list[np.ndarray]
    ) -> Path:
        """Write the support tiles (float32 ``C×H×W`` images, int64 ``H×W`` masks) atomically."""
        tensors: dict[str, np.ndarray] = {}
        for i, (img, mask) in enumerate(zip(images, masks, strict=True)):
            tensors[f"image_{i:04d}"] = np.ascontiguousarray(img, dtype=np.float32)
            tensors[f"mask_{i:04d}"] = np.ascontiguousarray(mask, dtype=np.int64)
        final = self.support_path(adaptation_id)
        with atomic_path(final) as tmp:
            save_file(tensors, str(tmp), metadata={"tiles": str(len(images))})
        return final

    def load_support(self, adaptation_id: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Read back what :meth:`save_support` wrote (safetensors: no pickle involved)."""
        data = load_file(str(self.support_path(adaptation_id)))
        n = len([k for k in data if k.startswith("image_")])
        images = [data[f"image_{i:04d}"] for i in range(n)]
        masks = [data[f"mask_{i:04d}"] for i in range(n)]
        return images, masks

    def delete(self, adaptation_id: str) -> None:
        """Remove everything stored for an adaptation (missing files are fine)."""
        shutil.rmtree(self.folder(adaptation_id), ignore_errors=True)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A private temporary folder for one request, removed when the block ends."""
        path = Path(tempfile.mkdtemp(prefix="req-", dir=self.root / "tmp"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def scratch_file(self, suffix: str) -> Path:
        """A fresh empty file in the staging area; the caller deletes it."""
        fd, name = tempfile.mkstemp(prefix="out-", suffix=suffix, dir=self.root / "tmp")
        os.close(fd)
        return Path(name)

    def sweep_tmp(self, older_than_s: float = 3600.0) -> int:
        """Remove staging leftovers of crashed requests; returns how many entries went."""
        removed = 0
        cutoff = time.time() - older_than_s
        for entry in (self.root / "tmp").iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def orphans(self, known_ids: set[str], older_than_s: float = 600.0) -> list[str]:
        """Adaptation folders with no database row (a crash between write and commit).

        Only folders older than ``older_than_s`` count, so a submission in flight in
        another worker (files written, row not yet committed) is never taken for one.
        """
        cutoff = time.time() - older_than_s
        out = []
        for p in (self.root / "adaptations").iterdir():
            try:
                if p.is_dir() and p.name not in known_ids and p.stat().st_mtime < cutoff:
                    out.append(p.name)
            except FileNotFoundError:
                continue
        return out
