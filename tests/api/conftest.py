"""Fixtures of the service tests: a tiny real bundle and an app per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import make_bundle, settings_for
from fastapi.testclient import TestClient

from api.app import create_app


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding one tiny real bundle named ``tiny``."""
    folder = tmp_path_factory.mktemp("models")
    make_bundle(folder / "tiny.bundle")
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path, models_dir: Path) -> Iterator[TestClient]:
    app = create_app(settings_for(data_dir, models_dir))
    with TestClient(app) as c:
        yield c
