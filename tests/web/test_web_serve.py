"""The newcomer's path: ``landcover serve`` without a models folder, local mode, offline docs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect
from webhelpers import free_port, make_bundle, serve

from api.routes.web import is_loopback

CLEAN = ("LANDCOVER_API_KEYS", "LANDCOVER_MODELS_DIR", "LANDCOVER_LOCAL_KEY", "LANDCOVER_DATA_DIR")
EXTERNAL = re.compile(r"""https?://|(?:src|href)\s*=\s*["']?//""", re.I)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CLEAN}


def serve_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "landcover.cli", "serve", "--port", str(port),
            "--log-level", "warning"]  # fmt: skip


def test_serve_without_models_says_exactly_how_to_get_one(tmp_path: Path) -> None:
    done = subprocess.run(
        serve_argv(free_port()), cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "make demo" in done.stdout
    assert "runs/demo/maml.bundle" in done.stdout
    assert "--models-dir" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_serve_after_make_demo_serves_the_page_in_local_mode(
    tmp_path: Path, browser: Browser
) -> None:
    """``make demo`` writes runs/demo/maml.bundle; ``landcover serve`` then needs nothing."""
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    make_bundle(tmp_path / "runs" / "demo" / "maml.bundle")
    port = free_port()
    env = {**clean_env(), "LANDCOVER_POLL_S": "0.05"}
    argv = serve_argv(port)
    with serve(argv, env, port, tmp_path / "serve.log", cwd=tmp_path) as url:
        log = (tmp_path / "serve.log").read_text()
        assert "runs/demo" in log and "local mode" in log
        assert f"open http://127.0.0.1:{port}/" in log

        # the docs reference no other host (the same check as `curl -s .../docs`)
        for path in ("/", "/docs", "/redoc"):
            html = httpx.get(f"{url}{path}").text
            assert not EXTERNAL.search(html), f"{path} references another host"
        assert httpx.get(f"{url}/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert httpx.get(f"{url}/static/vendor/redoc/redoc.standalone.js").status_code == 200

        config = httpx.get(f"{url}/web/config").json()
        assert config["local"] is True and len(config["key"]) >= 32
        assert httpx.get(f"{url}/v1/models").status_code == 401  # still keyed for REST clients

        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"{url}/")
        banner = page.locator("#mode-banner")
        expect(banner).to_contain_text("Local mode")
        expect(banner).to_contain_text("API keys are needed")
        expect(page.locator("#model-select")).to_have_value("maml")
        expect(page.locator("#key-status")).to_contain_text("local session key")
        context.close()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("10.0.0.5", False), (None, False),
     ("testclient", False)],
)  # fmt: skip
def test_only_loopback_clients_get_the_local_key(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback
