"""Fixtures of the browser tests: a real uvicorn on 127.0.0.1 and Debian's headless Chromium.

Playwright drives ``/usr/bin/chromium`` (``make test`` installs it); it never downloads a
browser of its own. Without Chromium the tests fail with a message saying how to install it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webhelpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    KEY,
    free_port,
    make_bundle,
    serve,
    uvicorn_argv,
    write_tiles,
)

pytest.importorskip("playwright", reason="pip install -e '.[test]' installs playwright")
from playwright.sync_api import Browser, Page, sync_playwright


@pytest.fixture(scope="session")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with one tiny bundle (``tiny``) and a folder of labeled tiles."""
    root = tmp_path_factory.mktemp("web")
    (root / "models").mkdir()
    make_bundle(root / "models" / "tiny.bundle")
    write_tiles(root / "tiles", n=3, size=48)
    return root


@pytest.fixture(scope="session")
def server(web_root: Path) -> Iterator[str]:
    """The service under uvicorn with one API key (the exposed, keyed mode)."""
    port = free_port()
    env = {
        "LANDCOVER_MODELS_DIR": str(web_root / "models"),
        "LANDCOVER_DATA_DIR": str(web_root / "data"),
        "LANDCOVER_API_KEYS": KEY,
        "LANDCOVER_POLL_S": "0.05",
        "LANDCOVER_HEARTBEAT_S": "0.2",
        "LANDCOVER_LOCAL_KEY": "",
    }
    with serve(uvicorn_argv(port), env, port, web_root / "uvicorn.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium` "
            "(make test does this)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab (1280×800, downloads allowed); page errors fail the test."""
    size: dict[str, Any] = getattr(request, "param", {"width": 1280, "height": 800})
    context = browser.new_context(viewport=size, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.set_default_timeout(30_000)
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
