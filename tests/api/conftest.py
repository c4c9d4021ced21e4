"""Fixtures of the service tests: a tiny real bundle, an app per test, and the database.

Every test that uses ``data_dir`` (or ``client``) runs twice: on SQLite (the default,
a file in the data folder) and on a real PostgreSQL, a throwaway cluster started once per
session (:mod:`pgcluster`) with a fresh database per test. Set
``LANDCOVER_TEST_SKIP_POSTGRES=1`` to skip the PostgreSQL runs on a machine without the
server binaries (``make test`` installs them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import apihelpers
import pytest
from apihelpers import make_bundle, settings_for
from fastapi.testclient import TestClient
from pgcluster import Cluster, find_bin

from api.app import create_app


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding one tiny real bundle named ``tiny``."""
    folder = tmp_path_factory.mktemp("models")
    make_bundle(folder / "tiny.bundle")
    return folder


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A PostgreSQL cluster for the whole session."""
    if os.environ.get("LANDCOVER_TEST_SKIP_POSTGRES"):
        pytest.skip("LANDCOVER_TEST_SKIP_POSTGRES is set")
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; `make test` installs "
            "Debian's postgresql package, or set LANDCOVER_TEST_SKIP_POSTGRES=1"
        )
    cluster = Cluster(bin_dir).start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """``None`` (SQLite in the data folder) or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield None
        return
    cluster: Cluster = request.getfixturevalue("postgres")
    url = cluster.new_database()
    try:
        yield url
    finally:
        cluster.drop_database(url)


@pytest.fixture
def data_dir(tmp_path: Path, database_url: str | None) -> Iterator[Path]:
    """The storage folder; ``settings_for`` uses this test's database."""
    apihelpers.DATABASE_URL = database_url
    try:
        yield tmp_path / "data"
    finally:
        apihelpers.DATABASE_URL = None


@pytest.fixture
def client(data_dir: Path, models_dir: Path) -> Iterator[TestClient]:
    app = create_app(settings_for(data_dir, models_dir))
    with TestClient(app) as c:
        yield c
