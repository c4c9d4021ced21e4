"""The main flow with the keyboard alone, and layouts at 1280×800 (laptop) and 390×844 (phone)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_web_flows import enter_key, tile_paths
from webhelpers import KEY


def tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Press Tab until ``selector`` has the focus (fails if the keyboard cannot reach it)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def choose_with_keyboard(page: Page, files: list[str] | str) -> None:
    """Open the focused file input's chooser with the Space key and pick ``files``."""
    for _ in range(3):  # a busy headless Chromium may drop the first key press
        try:
            with page.expect_file_chooser(timeout=5_000) as chooser:
                page.keyboard.press("Space")
        except PlaywrightTimeout:
            continue
        chooser.value.set_files(files)
        return
    raise AssertionError("the file chooser does not open with the Space key")


def test_main_flow_with_the_keyboard_alone(page: Page, server: str, web_root: Path) -> None:
    page.goto(f"{server}/")
    tab_to(page, "#api-key")
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#key-status")).to_have_text("Key accepted.")
    page.wait_for_selector("body[data-adaptations=loaded]", state="attached")
    tab_to(page, "#model-select")
    tab_to(page, "#tile-files")
    choose_with_keyboard(page, tile_paths(web_root))
    expect(page.locator("#tile-list li")).to_have_count(6)
    tab_to(page, "#adapt-button")
    before = page.locator("#adaptations .badge.done").count()
    page.keyboard.press("Enter")
    expect(page.locator("#adaptations .badge.done")).to_have_count(before + 1, timeout=60_000)
    tab_to(page, "#predict-adaptation")
    tab_to(page, "#raster-file")
    choose_with_keyboard(page, str(web_root / "tiles" / "tile2.tif"))
    tab_to(page, "#predict-button")
    page.keyboard.press("Enter")
    expect(page.locator("#map img.class-map")).to_be_visible()
    tab_to(page, "#opacity")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#opacity-out")).to_have_text("59")
    tab_to(page, ".downloads [data-format=geotiff]")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename == "tile2_map.tif"
    # the tabs of the labels panel work with the arrow keys
    page.focus("#tab-upload")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#panel-paint")).to_be_visible()
    expect(page.locator("#panel-upload")).to_be_hidden()


@pytest.mark.parametrize(
    "page", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}], indirect=True,
    ids=["1280x800", "390x844"],
)  # fmt: skip
def test_layout_does_not_break(page: Page, server: str, web_root: Path) -> None:
    enter_key(page, server)
    page.set_input_files("#tile-files", tile_paths(web_root))
    before = page.locator("#adaptations .badge.done").count()
    page.click("#adapt-button")
    expect(page.locator("#adaptations .badge.done")).to_have_count(before + 1, timeout=60_000)
    page.set_input_files("#raster-file", str(web_root / "tiles" / "tile1.tif"))
    page.click("#predict-button")
    expect(page.locator("#map img.class-map")).to_be_visible()
    width = page.viewport_size["width"]  # type: ignore[index]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    controls = page.locator(
        "main button:visible, main select:visible, main input:not([type=file]):visible, "
        "#map, label.button"
    )
    for i in range(controls.count()):
        box = controls.nth(i).bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, controls.nth(i)
        assert box["width"] >= 16 and box["height"] >= 12  # nothing squeezed to nothing
    page.click("#tab-paint")
    page.set_input_files("#paint-file", str(web_root / "tiles" / "tile1.tif"))
    stage = page.locator("#paint-labels")
    expect(stage).to_be_visible()
    box = stage.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width + 0.5
    assert page.evaluate("document.documentElement.scrollWidth") <= width
