"""Units of the service: settings, content sniffing, the body limit, the CLI, storage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from apihelpers import HEADERS, pair_files, settings_for
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from api.cli import build_parser
from api.settings import Settings
from api.store import Store, atomic_path
from api.uploads import Kind, sniff


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LANDCOVER_API_KEYS", " aaaaaaaaaaaaaaaa1 , bbbbbbbbbbbbbbbb2 ,")
    monkeypatch.setenv("LANDCOVER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LANDCOVER_MAX_TILES", "7")
    s = Settings()
    assert s.api_keys == ["aaaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbbb2"] and s.max_tiles == 7
    assert s.db_url == f"sqlite:///{(tmp_path / 'landcover.db').resolve()}"
    monkeypatch.setenv("LANDCOVER_DATABASE_URL", "postgresql+psycopg://u:p@db/landcover")
    assert Settings().db_url == "postgresql+psycopg://u:p@db/landcover"
    monkeypatch.setenv("LANDCOVER_API_KEYS", "short")
    with pytest.raises(ValidationError, match="shorter than 16"):
        Settings()
    monkeypatch.setenv("LANDCOVER_API_KEYS", "")
    monkeypatch.setenv("LANDCOVER_MAX_TILES", "0")
    with pytest.raises(ValidationError, match="max_tiles"):
        Settings()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"II*\x00abcd", Kind.tiff),
        (b"MM\x00*abcd", Kind.tiff),
        (b"II+\x00abcd", Kind.tiff),
        (b"\x89PNG\r\n\x1a\nxx", Kind.png),
        (b"\xff\xd8\xff\xe0xxxx", Kind.jpeg),
        (b"PK\x03\x04xxxx", Kind.zip),
        (b"GIF89a", None),
        (b"", None),
        (b"<html>", None),
    ],
)
def test_sniff_by_magic_bytes(head: bytes, kind: Kind | None) -> None:
    assert sniff(head) is kind


def test_body_limit_counts_streamed_bytes(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, max_upload_bytes=4096)
    with TestClient(create_app(settings)) as client:

        def chunks():  # no Content-Length: the middleware must count
            for _ in range(10):
                yield b"x" * 1024

        r = client.post(
            "/v1/adaptations", headers={**HEADERS, "Content-Type": "multipart/form-data; "
                                        "boundary=b"}, content=chunks(),
        )  # fmt: skip
        assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(3))  # fmt: skip
        assert r.status_code == 413 and r.json()["code"] == "too_large"


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [target]


def test_store_support_round_trip_and_ids(tmp_path: Path) -> None:
    store = Store(tmp_path)
    images = [np.random.rand(3, 8, 8).astype(np.float32), np.ones((3, 5, 6), np.float32)]
    masks = [np.zeros((8, 8), np.int64), np.full((5, 6), 255, np.int64)]
    store.save_support("a" * 32, images, masks)
    got_i, got_m = store.load_support("a" * 32)
    assert all(np.array_equal(a, b) for a, b in zip(images + masks, got_i + got_m))
    with pytest.raises(ValueError, match="service-generated"):
        store.folder("../../etc")
    store.delete("a" * 32)
    assert not (tmp_path / "adaptations" / ("a" * 32)).exists()


def test_serve_cli_options() -> None:
    args = build_parser().parse_args(["--host", "127.0.0.1", "--port", "9000", "--workers", "3"])
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 9000, 3)
    from landcover.cli import COMMANDS

    assert COMMANDS["serve"][0] == "api.cli"


def test_ready_reports_missing_models(data_dir: Path, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(data_dir, tmp_path / "nothing"))) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "not_ready"
        assert "no loadable *.bundle" in r.json()["problems"][0]
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(1))  # fmt: skip
        assert r.status_code == 422 and r.json()["code"] == "unknown_model"


def test_slots_bound_running_and_waiting() -> None:
    import threading

    from api.errors import TooBusy
    from api.limits import Slots

    slots = Slots(1, wait_s=0.05, max_waiting=1)
    with slots.take("predictions"):
        with pytest.raises(TooBusy, match="none finished within"), slots.take("x"):
            pass  # waited, timed out
        entered = threading.Event()
        release = threading.Event()

        def waiter() -> None:  # occupies the only waiting place
            slots.wait_s = 5.0
            entered.set()
            with slots.take("predictions"):
                release.wait(5)

        t = threading.Thread(target=waiter)
        t.start()
        entered.wait(5)
        deadline = time.monotonic() + 5
        while slots._waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(TooBusy, match="waiting"), slots.take("predictions"):
            pass
    release.set()
    t.join(5)
    with slots.take("predictions"):  # everything released
        pass


def test_storage_id_is_whole_and_shared_when_replicas_race(tmp_path: Path) -> None:
    """Replicas starting at once on one folder all get the same full id, never an empty one.

    (An earlier version created ``STORAGE_ID`` empty and then wrote it, so a replica reading
    in between recorded an empty id and the others were refused as "not the shared storage".)
    """
    from concurrent.futures import ThreadPoolExecutor

    for attempt in range(20):
        root = tmp_path / f"shared{attempt}"
        stores = [Store(root) for _ in range(16)]
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(Store.storage_id, stores))
        assert len(set(ids)) == 1 and len(ids[0]) == 32, ids
        assert (root / "STORAGE_ID").read_text().strip() == ids[0]
        assert not list(root.glob(".storage_id.*"))  # no temporary file left behind
    (root / "STORAGE_ID").write_text("")
    with pytest.raises(ValueError, match="not a storage id"):
        Store(root).storage_id()
