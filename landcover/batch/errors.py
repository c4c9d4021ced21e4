"""Errors of the batch mapper: each says what was wrong and what to do."""

from __future__ import annotations


class ManifestError(ValueError):
    """The manifest (or a file it names) is not valid; the message names entry and field."""


class SceneError(RuntimeError):
    """Mapping one scene (or one block of it) failed.

    Raised on the Dask worker with the original error's type and message as plain text, so
    that it pickles whatever the original exception held; Dask retries the task, then the
    run report records the message.
    """
