"""The analysts' page in a real browser: key, tiles, validation errors, adapt, map, downloads."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from playwright.sync_api import Page, expect
from webhelpers import KEY, class_map, image_of, write_tiff


def enter_key(page: Page, url: str) -> None:
    page.goto(f"{url}/")
    expect(page.locator("#mode-banner")).to_contain_text("needs an API key")
    page.fill("#api-key", KEY)
    page.click("#key-use")
    expect(page.locator("#key-status")).to_have_text("Key accepted.")
    page.wait_for_selector("body[data-adaptations=loaded]", state="attached")


def tile_paths(web_root: Path) -> list[str]:
    return [str(web_root / "tiles" / f"tile{i}.{e}") for i in range(3) for e in ("tif", "png")]


def wait_done(page: Page, count: int) -> None:
    expect(page.locator("#adaptations .badge.done")).to_have_count(count, timeout=60_000)


def test_page_and_docs_load_nothing_from_other_hosts(page: Page, server: str) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    for path in ("/", "/docs", "/redoc"):
        page.goto(f"{server}{path}")
        page.wait_for_load_state("networkidle")
    expect(page.locator("h1").first).to_be_visible()  # ReDoc rendered the API title
    page.goto(f"{server}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("landcover")
    foreign = [u for u in requests if not u.startswith(server) and not u.startswith("blob:")]
    assert not foreign, f"requests to other hosts: {foreign}"


def test_wrong_key_is_refused_and_not_kept(page: Page, server: str) -> None:
    page.goto(f"{server}/")
    page.fill("#api-key", "not-a-valid-key-0000000000")
    page.click("#key-use")
    expect(page.locator("#key-status")).to_contain_text("unknown API key")
    assert page.evaluate("sessionStorage.getItem('landcover.apiKey')") is None
    expect(page.locator("#model-select")).to_be_disabled()


def test_upload_adapt_predict_download_delete(page: Page, server: str, web_root: Path) -> None:
    enter_key(page, server)
    assert page.evaluate("sessionStorage.getItem('landcover.apiKey')") == KEY
    # the model's bands and classes with their colours
    expect(page.locator("#model-info")).to_contain_text("B04, B03, B02")
    legend = page.locator("#model-classes li")
    expect(legend).to_have_count(3)
    expect(legend.nth(0)).to_contain_text("water")
    swatch = legend.nth(0).locator(".swatch")
    assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(30, 90, 220)"

    # a bad mask: the validation error shows next to the file it names
    bad = web_root / "bad"
    bad.mkdir(exist_ok=True)
    write_tiff(bad / "odd.tif", image_of(class_map(48, 0), 0))
    Image.fromarray(np.full((48, 48), 7, np.uint8)).save(bad / "odd.png")
    page.set_input_files("#tile-files", [str(bad / "odd.tif"), str(bad / "odd.png")])
    expect(page.locator("#tile-list li")).to_have_count(2)
    page.click("#adapt-button")
    flagged = page.locator("#tile-list li.bad")
    expect(flagged).to_have_count(1)
    expect(flagged).to_contain_text("odd.png")
    expect(flagged.locator(".file-error")).to_contain_text("7")
    for _ in range(2):
        page.locator("#tile-list li button").first.click()
    expect(page.locator("#tile-list li")).to_have_count(0)

    # good tiles (images + masks paired by stem) -> an adaptation that finishes
    page.set_input_files("#tile-files", tile_paths(web_root))
    roles = page.locator("#tile-list select")
    expect(roles).to_have_count(6)
    assert [roles.nth(i).input_value() for i in range(6)] == ["image", "mask"] * 3
    page.click("#adapt-button")
    expect(page.locator("#adapt-error")).to_contain_text("follow it below")
    wait_done(page, 1)
    expect(page.locator("#adaptations td.miou").first).to_have_text(
        re.compile(r"\d\.\d{3} → \d\.\d{3}")
    )

    # predict: the map is drawn over the image, with an opacity slider and a legend
    page.set_input_files("#raster-file", str(web_root / "tiles" / "tile0.tif"))
    page.click("#predict-button")
    expect(page.locator("#map-view")).to_be_visible()
    overlay = page.locator("#map img.class-map")
    expect(overlay).to_be_visible()
    page.wait_for_function("document.querySelector('#map img.class-map').naturalWidth === 48")
    base = page.locator("#map img.leaflet-image-layer:not(.class-map)")
    page.wait_for_function(
        "document.querySelector('#map img.leaflet-image-layer:not(.class-map)').naturalWidth === 48"
    )
    base_box = base.bounding_box()
    over_box = overlay.bounding_box()
    assert base_box and over_box and base_box == over_box  # exactly on top of the image
    page.fill("#opacity", "25")
    assert overlay.evaluate("e => getComputedStyle(e).opacity") == "0.25"
    expect(page.locator("#map-legend li")).to_have_count(3)

    # downloads: a GeoTIFF with the raster's CRS, and GeoJSON
    with page.expect_download() as info:
        page.click(".downloads [data-format=geotiff]")
    download = info.value
    assert download.suggested_filename == "tile0_map.tif"
    path = download.path()
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.crs.to_epsg()) == (48, 48, 32618)
        assert set(np.unique(src.read(1))) <= {1, 2, 3, 255}  # the class file's values
    with page.expect_download() as info:
        page.click(".downloads [data-format=geojson]")
    assert info.value.suggested_filename == "tile0_map.geojson"
    assert b"FeatureCollection" in Path(info.value.path()).read_bytes()

    # list and delete
    rows = page.locator("#adaptations tbody tr")
    n = rows.count()
    rows.first.get_by_role("button", name=re.compile("Delete")).click()
    expect(rows).to_have_count(n - 1)


def test_paint_strokes_then_adapt(page: Page, server: str, web_root: Path) -> None:
    enter_key(page, server)
    page.click("#tab-paint")
    page.set_input_files("#paint-file", str(web_root / "tiles" / "tile0.tif"))
    canvas = page.locator("#paint-labels")
    expect(canvas).to_be_visible()

    def drag(x0: float, x1: float, y0: float, y1: float) -> None:
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=12)
        page.mouse.up()

    def stroke(cls: int, x0: float, x1: float, y0: float, y1: float) -> None:
        page.locator("#paint-classes input").nth(cls).check()
        drag(x0, x1, y0, y1)

    page.fill("#brush-size", "4")
    # tile0: three vertical class bands; paint inside each
    mask = class_map(48, 0)
    for cls in range(3):
        cols = np.flatnonzero(mask[0] == cls + 1)
        x = (cols.mean() + 0.5) / 48
        stroke(cls, x, x, 0.15, 0.85)
    expect(page.locator("#paint-status")).to_contain_text("water, forest, field")
    # the eraser removes labels
    page.check("input[name=tool][value=eraser]")
    drag(0.01, 0.99, 0.5, 0.5)

    # the sparse mask the page sends: class values where painted, the ignore value elsewhere
    png = page.evaluate(
        """async () => {
            const p = window.landcoverPage;
            const blob = await p.painter.maskPng(p.maskEncoding(p.currentModel()));
            return Array.from(new Uint8Array(await blob.arrayBuffer()));
        }"""
    )
    sent = np.asarray(Image.open(io.BytesIO(bytes(png))))
    assert sent.shape == (48, 48) and sent.dtype == np.uint8
    painted = sent != 0
    assert 0.05 < painted.mean() < 0.5  # sparse: most pixels unlabeled
    assert set(np.unique(sent)) == {0, 1, 2, 3}
    assert (sent[painted] == mask[painted]).mean() > 0.9  # strokes landed in their bands
    assert not painted[23:25].any()  # the erased line

    page.click("#paint-add")
    expect(page.locator("#tile-list li")).to_contain_text("painted")
    before = page.locator("#adaptations .badge.done").count()
    page.click("#adapt-button")
    wait_done(page, before + 1)
    expect(page.locator("#adaptations tbody tr").first.locator(".badge")).to_have_text("done")


def test_drop_a_zip_in_the_folder_format(page: Page, server: str, web_root: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(2):
            zf.write(web_root / "tiles" / f"tile{i}.tif", f"region/images/t{i}.tif")
            zf.write(web_root / "tiles" / f"tile{i}.png", f"region/masks/t{i}.png")
    enter_key(page, server)
    page.evaluate(
        """bytes => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "region.zip"));
            const zone = document.querySelector("#dropzone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        list(buf.getvalue()),
    )
    expect(page.locator("#tile-list li")).to_have_count(1)
    assert page.locator("#tile-list select").input_value() == "archive"
    before = page.locator("#adaptations .badge.done").count()
    page.click("#adapt-button")
    wait_done(page, before + 1)
    expect(page.locator("#adaptations tbody tr").first).to_contain_text("2")  # tiles


def adaptation(status: str, **extra: object) -> dict:
    return {
        "id": (status * 8)[:8] + "0" * 24, "model": "tiny", "status": status, "reason": None,
        "tiles": 3, "steps": None, "support_miou_before": None, "support_miou_after": None,
        "timings": {}, "created_at": "2026-11-29T10:00:00Z", "started_at": None,
        "finished_at": None, "links": {}, **extra,
    }  # fmt: skip


def test_statuses_reasons_and_the_adaptation_report(page: Page, server: str) -> None:
    items = [
        adaptation("queued"),
        adaptation("running"),
        adaptation("failed", reason="the support tiles hold no labeled pixel; label some"),
        adaptation(
            "done", support_miou_before=0.31, support_miou_after=0.74,
            report={"support_miou_before": 0.31, "support_miou_after": 0.74, "steps_kept": 7,
                    "steps_tried": 10, "held_out_tiles": 1},
        ),
        adaptation("done", support_miou_before=0.2, support_miou_after=0.5),
    ]  # fmt: skip
    page.route(
        "**/v1/adaptations",
        lambda route: (
            route.fulfill(json={"items": items})
            if route.request.method == "GET"
            else route.continue_()
        ),
    )
    enter_key(page, server)
    rows = page.locator("#adaptations tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.nth(0).locator(".badge")).to_have_text("queued")
    expect(rows.nth(1).locator(".badge")).to_have_text("running")
    expect(rows.nth(2)).to_contain_text("failed")
    expect(rows.nth(2).locator(".reason")).to_have_text(items[2]["reason"])
    expect(rows.nth(3).locator(".miou")).to_have_text("0.310 → 0.740 (1 held-out tile)")
    expect(rows.nth(3).locator(".steps")).to_have_text("default (2), kept 7 of 10")
    expect(rows.nth(4).locator(".miou")).to_have_text("0.200 → 0.500")
    expect(page.locator("#predict-adaptation option")).to_have_count(2)  # done ones only


def test_preview_helper_answers_bad_uploads_in_plain_words(server: str, web_root: Path) -> None:
    import httpx

    headers = {"X-API-Key": KEY}
    tif = (web_root / "tiles" / "tile0.tif").read_bytes()
    ok = httpx.post(f"{server}/web/preview", files={"raster": ("a.tif", tif)}, headers=headers,
                    data={"model": "tiny"})  # fmt: skip
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    assert (ok.headers["x-raster-width"], ok.headers["x-raster-height"]) == ("48", "48")
    assert Image.open(io.BytesIO(ok.content)).size == (48, 48)
    for name, data, status in [
        ("empty.tif", b"", 415),
        ("notes.txt", b"hello", 415),
        ("broken.png", b"\x89PNG\r\n\x1a\n not really", 422),
    ]:
        r = httpx.post(f"{server}/web/preview", files={"raster": (name, data)}, headers=headers)
        assert r.status_code == status, r.text
        assert name in r.json()["detail"]
    assert httpx.post(f"{server}/web/preview", files={"raster": ("a.tif", tif)}).status_code == 401
