"""The page on real data (issue 21, item 4), in Debian's Chromium against a real uvicorn.

* a 1126×1058 Dubai JPEG tile and its colour mask adapt with no manual crop (the service
  cuts them); the map view pans and zooms over the raster with the overlay; legend,
  palette and opacity stay in view at 1280×800; the Dubai colours get a distinct palette;
* downloads come from the adaptation that drew the map on screen, and each format is
  predicted at most once per map (the PNG on screen is the PNG download);
* a wrong key in local mode keeps the local key; the steps field is bounded by the
  service's ``max_steps``;
* too-large files are all named at once before any upload or painting; a lone mask and a
  non-image are called what they are, next to their files; "Remove all"; the service's
  errors sit next to the user's own file;
* running jobs show progress from the API's timings; queued jobs update by themselves.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from playwright.sync_api import Page, expect
from webhelpers import (
    DUBAI,
    KEY,
    dubai_bundle,
    dubai_real_size_pair,
    free_port,
    serve,
    uvicorn_argv,
)

DISTINCT = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
DATASET = [(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41)]


@pytest.fixture(scope="module")
def dubai_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with an (untrained) bundle of the Dubai classes."""
    root = tmp_path_factory.mktemp("dubai-web")
    (root / "models").mkdir()
    dubai_bundle(root / "models" / "dubai.bundle")
    return root


@pytest.fixture(scope="module")
def real_pair(dubai_root: Path) -> Path:
    """The 1126×1058 Dubai pair on disk (``tiles/dubai_1126.jpg`` and ``.png``)."""
    if not DUBAI.is_dir():
        pytest.skip("the dubai-aerial sample is not here")
    dubai_real_size_pair(dubai_root / "tiles")
    return dubai_root / "tiles"


@pytest.fixture(scope="module")
def local_server(dubai_root: Path) -> Iterator[str]:
    """The service in local mode (loopback, the page is given the session's key)."""
    port = free_port()
    env = {
        "LANDCOVER_MODELS_DIR": str(dubai_root / "models"),
        "LANDCOVER_DATA_DIR": str(dubai_root / "data"),
        "LANDCOVER_API_KEYS": KEY,
        "LANDCOVER_LOCAL_KEY": KEY,
        "LANDCOVER_POLL_S": "0.05",
        "LANDCOVER_HEARTBEAT_S": "0.2",
    }
    with serve(uvicorn_argv(port), env, port, dubai_root / "uvicorn.log") as url:
        yield url


def open_local(page: Page, url: str) -> None:
    page.goto(f"{url}/")
    expect(page.locator("#key-status")).to_have_text("Using the local session key.")
    page.wait_for_selector("body[data-adaptations=loaded]", state="attached")


def adapt_real_pair(page: Page, tiles: Path) -> str:
    """Upload the 1126×1058 pair, adapt, wait until done; the new adaptation's id."""
    before = page.locator("#adaptations .badge.done").count()
    page.set_input_files(
        "#tile-files", [str(tiles / "dubai_1126.jpg"), str(tiles / "dubai_1126.png")]
    )
    items = page.locator("#tile-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("1126×1058 px")
    expect(page.locator("#tile-list li.bad")).to_have_count(0)
    page.click("#adapt-button")
    expect(page.locator("#adaptations .badge.done")).to_have_count(before + 1, timeout=120_000)
    return page.locator("#adaptations tbody tr").first.get_attribute("data-id") or ""


def overlay_colours(page: Page) -> set[tuple[int, int, int]]:
    """The opaque colours of the map overlay on screen."""
    pixels = page.evaluate(
        """() => {
            const img = document.querySelector('#map img.class-map');
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const ctx = c.getContext('2d');
            ctx.drawImage(img, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] === 255) seen.add(`${d[i]},${d[i + 1]},${d[i + 2]}`);
            }
            return [...seen];
        }"""
    )
    return {tuple(int(v) for v in p.split(",")) for p in pixels}  # type: ignore[misc]


def inside(box: dict, outer: dict) -> bool:
    return (box["x"] >= outer["x"] - 0.5 and box["y"] >= outer["y"] - 0.5
            and box["x"] + box["width"] <= outer["x"] + outer["width"] + 0.5
            and box["y"] + box["height"] <= outer["y"] + outer["height"] + 0.5)  # fmt: skip


def test_real_size_tile_adapts_and_maps_with_pan_zoom_and_cached_downloads(
    page: Page, local_server: str, real_pair: Path
) -> None:
    predicts: list[str] = []
    page.on("request", lambda r: predicts.append(r.url) if "/predict" in r.url else None)
    open_local(page, local_server)
    assert page.locator("#steps").get_attribute("max") == "100"  # the service's max_steps
    expect(page.locator("#tiles-limits")).to_contain_text("16777216 px each")

    first = adapt_real_pair(page, real_pair)
    row = page.locator(f"#adaptations tr[data-id='{first}']")
    expect(row.locator(".tiles")).to_have_text("1")
    expect(row.locator(".steps")).to_contain_text("default (2), kept")
    expect(row.locator(".timing")).to_have_text(re.compile(r"adapt \d+\.\d s, total \d+\.\d s"))

    # map the tile: Leaflet view with the overlay; Dubai's close colours get the distinct palette
    page.set_input_files("#raster-file", str(real_pair / "dubai_1126.jpg"))
    page.click("#predict-button")
    expect(page.locator("#map img.class-map")).to_be_visible(timeout=60_000)
    page.wait_for_function("document.querySelector('#map img.class-map').naturalWidth > 0")
    assert len(predicts) == 1 and first in predicts[0] and "format=png" in predicts[0]
    expect(page.locator("#palette")).to_have_value("distinct")
    swatches = page.locator("#map-legend .swatch")
    expect(swatches).to_have_count(5)
    assert (
        swatches.nth(0).evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(31, 119, 180)"
    )
    assert overlay_colours(page) <= set(DISTINCT)
    page.select_option("#palette", "dataset")
    page.wait_for_function(
        "document.querySelector('#map-legend .swatch').style.background.includes('60, 16, 152')"
    )
    page.wait_for_function("document.querySelector('#map img.class-map').complete")
    assert overlay_colours(page) <= set(DATASET)

    # legend, palette and opacity are inside the map, in view with it at 1280×800
    page.locator("#map").scroll_into_view_if_needed()
    map_box = page.locator("#map").bounding_box()
    viewport = {"x": 0, "y": 0, "width": 1280, "height": 800}
    assert map_box and inside(map_box, viewport), map_box
    for sel in ("#map-panel", "#opacity", "#map-legend", "#palette"):
        box = page.locator(sel).bounding_box()
        assert box and inside(box, map_box), (sel, box, map_box)

    # pan (drag, arrow keys) and zoom (button, wheel)
    start = page.evaluate("window.landcoverPage.mapState()")
    cx, cy = map_box["x"] + map_box["width"] * 0.3, map_box["y"] + map_box["height"] * 0.6

    def drag() -> None:  # 160 x 80 px from (cx, cy) in 20 moves, then let the map settle
        page.mouse.move(cx, cy)
        page.mouse.down()
        for k in range(1, 21):
            page.mouse.move(cx + 8 * k, cy + 4 * k)
        page.mouse.up()
        page.wait_for_timeout(600)

    drag()
    dragged = page.evaluate("window.landcoverPage.mapState()")
    page.click(".leaflet-control-zoom-in")
    page.wait_for_function(f"window.landcoverPage.mapState().zoom > {start['zoom']}")
    zoomed = page.evaluate("window.landcoverPage.mapState()")
    drag()
    panned = page.evaluate("window.landcoverPage.mapState()")
    page.focus("#map")
    page.keyboard.press("ArrowUp")
    page.wait_for_timeout(600)
    keyed = page.evaluate("window.landcoverPage.mapState()")
    assert dragged["center"] != start["center"]
    assert zoomed["zoom"] > start["zoom"]
    assert panned["center"] != zoomed["center"] and keyed["center"] != panned["center"]
    base_box = page.locator("#map img.leaflet-image-layer:not(.class-map)").bounding_box()
    assert base_box == page.locator("#map img.class-map").bounding_box()  # overlay on the image

    # a second adaptation, chosen in the dropdown: downloads still come from the first
    second = adapt_real_pair(page, real_pair)
    page.select_option("#predict-adaptation", second)
    with page.expect_download() as info:
        page.click(".downloads [data-format=png]")
    assert len(predicts) == 1  # the PNG on screen, no new prediction
    png = np.asarray(Image.open(info.value.path()))
    assert png.shape[:2] == (1058, 1126)
    with page.expect_download() as info:
        page.click(".downloads [data-format=geotiff]")
    assert len(predicts) == 2 and first in predicts[1] and "format=geotiff" in predicts[1]
    with page.expect_download():
        page.click(".downloads [data-format=geotiff]")
    assert len(predicts) == 2  # cached
    expect(page.locator("#predict-status")).to_contain_text(f"adaptation {first[:8]}")

    # the adaptation that drew the map is deleted: no silent download from another one
    page.locator(f"#adaptations tr[data-id='{first}'] button.danger").click()
    expect(page.locator(f"#adaptations tr[data-id='{first}']")).to_have_count(0)
    expect(page.locator("#map-source")).to_contain_text("was deleted")
    page.click(".downloads [data-format=geojson]")
    expect(page.locator("#predict-status")).to_contain_text("no longer exists")
    assert all(second not in url for url in predicts)
    with page.expect_download():
        page.click(".downloads [data-format=png]")  # still the map on screen

    # a wrong key in local mode: refused, and the local key stays in use
    page.fill("#api-key", "not-a-valid-key-0000000000")
    page.click("#key-use")
    expect(page.locator("#key-status")).to_contain_text("still uses the local session key")
    assert page.evaluate("window.landcoverPage.state.key") == KEY
    page.click("#refresh")
    expect(page.locator(f"#adaptations tr[data-id='{second}']")).to_have_count(1)
    expect(page.locator("#adapt-error")).not_to_contain_text("API key")


def test_too_large_files_are_named_at_once_before_any_upload(
    page: Page, local_server: str, tmp_path: Path
) -> None:
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    Image.fromarray(np.zeros((4200, 4100, 3), np.uint8)).save(tmp_path / "huge.png")
    Image.fromarray(np.zeros((4200, 4100), np.uint8)).save(tmp_path / "huge_mask.png")
    with rasterio.open(tmp_path / "wide.tif", "w", driver="GTiff", width=20000, height=1000,
                       count=3, dtype="uint8", compress="deflate", tiled=True) as dst:  # fmt: skip
        dst.write(np.zeros((3, 1000, 20000), np.uint8))
    with rasterio.open(tmp_path / "bigtiff.tif", "w", driver="GTiff", width=4097, height=4097,
                       count=3, dtype="uint8", compress="deflate", tiled=True,
                       BIGTIFF="YES") as dst:  # fmt: skip
        dst.write(np.zeros((3, 4097, 4097), np.uint8))
    assert (tmp_path / "bigtiff.tif").read_bytes()[2] == 43  # a BigTIFF header
    Image.fromarray(np.zeros((1000, 20000), np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "fine.jpg")
    Image.fromarray(np.ones((64, 64), np.uint8)).save(tmp_path / "fine.png")
    open_local(page, local_server)
    names = ["huge.png", "huge_mask.png", "wide.tif", "wide.png", "bigtiff.tif", "fine.jpg",
             "fine.png"]  # fmt: skip
    page.set_input_files("#tile-files", [str(tmp_path / n) for n in names])
    bad = page.locator("#tile-list li.bad")
    expect(bad).to_have_count(5)
    sizes = [("huge.png", 4100, 4200), ("huge_mask.png", 4100, 4200),
             ("wide.tif", 20000, 1000), ("wide.png", 20000, 1000),
             ("bigtiff.tif", 4097, 4097)]  # fmt: skip
    for i, (name, w, h) in enumerate(sizes):
        expect(bad.nth(i).locator(".file-error")).to_contain_text(
            f"{name} is {w}×{h} = {w * h} px, more than this service's "
            "limit of 16777216 px per tile (about 4096×4096)"
        )
    page.click("#adapt-button")
    expect(page.locator("#adapt-error")).to_contain_text("Nothing was sent")
    assert not sent
    # painting a too-large image is refused before it is read or painted
    page.click("#tab-paint")
    page.set_input_files("#paint-file", str(tmp_path / "huge.png"))
    expect(page.locator("#paint-status")).to_contain_text(
        "cut it into smaller tiles before painting"
    )
    expect(page.locator("#paint-stage")).to_be_hidden()
    assert not sent


def test_each_problem_next_to_its_file_and_remove_all(
    page: Page, local_server: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("field notes, not an image")
    (tmp_path / "renamed.png").write_text("a text file with an image's name")
    Image.fromarray(np.ones((64, 64), np.uint8)).save(tmp_path / "lonely_mask.png")
    Image.fromarray(np.ones((64, 64), np.uint8)).save(tmp_path / "alone.png")  # 1-band PNG
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "orphan.jpg")
    open_local(page, local_server)
    names = ["notes.txt", "renamed.png", "lonely_mask.png", "alone.png", "orphan.jpg"]
    page.set_input_files("#tile-files", [str(tmp_path / n) for n in names])
    items = page.locator("#tile-list li")
    expect(items).to_have_count(5)
    expected = [
        "notes.txt is not an image",
        "renamed.png is not an image",
        "lonely_mask.png is a mask without its image",
        "alone.png is a mask without its image",
        "orphan.jpg is an image without a mask",
    ]
    for i, text in enumerate(expected):
        expect(items.nth(i).locator(".file-error")).to_contain_text(text)
    page.click("#tiles-clear")
    expect(items).to_have_count(0)
    expect(page.locator("#tiles-clear")).to_be_hidden()

    # more tiles than the service takes: said under the list, one click empties it
    many = tmp_path / "many"
    many.mkdir()
    for i in range(33):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(many / f"t{i}.jpg")
        Image.fromarray(np.ones((8, 8), np.uint8)).save(many / f"t{i}.png")
    page.set_input_files("#tile-files", sorted(str(p) for p in many.iterdir()))
    expect(items).to_have_count(66)
    expect(page.locator("#tiles-problems")).to_contain_text(
        "33 labeled tiles, more than this service's limit of 32 per adaptation"
    )
    page.click("#adapt-button")
    expect(page.locator("#adapt-error")).to_contain_text("Nothing was sent")
    page.click("#tiles-clear")
    expect(items).to_have_count(0)
    expect(page.locator("#tiles-problems")).to_have_text("")

    # an error about a zip's content sits next to the zip
    with zipfile.ZipFile(tmp_path / "region.zip", "w") as zf:
        buf = io.BytesIO()
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buf, format="JPEG")
        zf.writestr("images/t0.jpg", buf.getvalue())
        buf = io.BytesIO()
        Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(buf, format="PNG")
        zf.writestr("masks/t0.png", buf.getvalue())
    page.set_input_files("#tile-files", str(tmp_path / "region.zip"))
    page.click("#adapt-button")
    zipped = page.locator("#tile-list li.bad")
    expect(zipped).to_have_count(1)
    expect(zipped).to_contain_text("region.zip")
    expect(zipped.locator(".file-error")).to_contain_text("(7, 7, 7)")
    page.click("#tiles-clear")

    # the service's error, next to the user's own file (never a staged name like tile_0000)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "sizemismatch.jpg")
    Image.fromarray(np.full((32, 32, 3), (60, 16, 152), np.uint8)).save(
        tmp_path / "sizemismatch.png"
    )
    page.set_input_files("#tile-files", [str(tmp_path / "sizemismatch.jpg"),
                                         str(tmp_path / "sizemismatch.png")])  # fmt: skip
    expect(page.locator("#tile-list li.bad")).to_have_count(0)
    page.click("#adapt-button")
    flagged = page.locator("#tile-list li.bad")
    expect(flagged.first).to_contain_text("its image 'sizemismatch.jpg' is 64×64")
    assert "tile_" not in page.locator("#tiles-section").inner_text()


def adaptation(aid: str, status: str, started: datetime | None, **extra: object) -> dict:
    now = datetime.now(UTC)
    return {
        "id": aid * 32, "model": "dubai", "status": status, "reason": None, "tiles": 2,
        "steps": 5, "support_miou_before": None, "support_miou_after": None,
        "timings": {"queued_s": 0.5}, "created_at": (now - timedelta(seconds=30)).isoformat(),
        "started_at": started.isoformat() if started else None, "finished_at": None,
        "links": {}, **extra,
    }  # fmt: skip


def test_progress_from_timings_and_queued_jobs_update(page: Page, local_server: str) -> None:
    now = datetime.now(UTC)
    done = adaptation("a", "done", now - timedelta(seconds=40),
                      timings={"queued_s": 0.5, "adapt_s": 20.0, "total_s": 21.0})  # fmt: skip
    running = adaptation("b", "running", now - timedelta(seconds=10))
    queued = adaptation("c", "queued", None)
    calls = {"n": 0}

    def listing(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.method != "GET":
            route.continue_()
            return
        calls["n"] += 1
        if calls["n"] <= 2:
            route.fulfill(json={"items": [queued, running, done]})
        else:
            finished = {"timings": {"queued_s": 1.0, "adapt_s": 12.0, "total_s": 13.0}}
            items = [{**queued, "status": "done", **finished},
                     {**running, "status": "done", **finished}, done]  # fmt: skip
            route.fulfill(json={"items": items})

    page.route("**/v1/adaptations", listing)
    open_local(page, local_server)
    rows = page.locator("#adaptations tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator(".timing")).to_contain_text("queued for")
    expect(rows.nth(1).locator(".timing")).to_contain_text("running for")
    progress = rows.nth(1).locator("progress")
    value = float(progress.evaluate("e => e.value"))
    assert 0.4 <= value <= 0.7, value  # about 10 s of the 20 s this model's last adaptation took
    expect(rows.nth(1).locator(".timing")).to_contain_text("left")
    expect(rows.nth(1).locator(".steps")).to_have_text("5")
    # no click on Refresh: the page polls while jobs are queued or running
    expect(page.locator("#adaptations .badge.done")).to_have_count(3, timeout=10_000)
    expect(rows.nth(0).locator(".timing")).to_have_text("adapt 12.0 s, total 13.0 s")
