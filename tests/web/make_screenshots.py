"""Screenshots of the page for docs/web.md, on real imagery (Dubai aerial, held-out Tile 4).

Serves the bundle that ``landcover bench strokes`` saved (meta-trained with stroke support
sets on Tiles 1–3) through ``landcover serve`` in local mode, then drives Chromium like an
analyst: drops files the service would refuse (a too-large image, a lone mask, a text
file: each named next to it, before any upload; ``web_files.png``), removes them all,
uploads three labeled tiles, adapts (the adaptations list, ``web_adaptations.png``), maps a
fourth image (the Leaflet map view, zoomed in once, ``web_map.png``), and paints strokes on
a fifth image (``web_paint.png``), then adapts from the strokes alone.

    PYTHONPATH=. python tests/web/make_screenshots.py --out docs/img

Not a test (pytest does not collect it); the browser tests cover the same flows on tiny data.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhelpers import CHROMIUM, CHROMIUM_ARGS, free_port, serve

from landcover.bench.strokes import DUBAI


def quarter(folder: Path, out: Path, scale: float) -> list[tuple[Path, Path, np.ndarray]]:
    """Downscaled copies of a Dubai region (the bundle was meta-trained at this scale)."""
    out.mkdir(parents=True, exist_ok=True)
    tiles = []
    for img_path in sorted((folder / "images").glob("*.jpg")):
        img = Image.open(img_path).convert("RGB")
        size = (round(img.width * scale), round(img.height * scale))
        mask = Image.open(folder / "masks" / f"{img_path.stem}.png").convert("RGB")
        raw = np.asarray(mask.resize(size, Image.NEAREST)).copy()
        raw[(raw == 0).all(axis=-1)] = (155, 155, 155)
        image_out, mask_out = out / f"{img_path.stem}.jpg", out / f"{img_path.stem}.png"
        img.resize(size, Image.BILINEAR).save(image_out, quality=92)
        Image.fromarray(raw).save(mask_out)
        tiles.append((image_out, mask_out, DUBAI.encode(raw)))
    return tiles


def refused_files(out: Path, pair: tuple[Path, Path, np.ndarray]) -> list[Path]:
    """Files the page names before any upload: too large, a lone mask and image, not an image."""
    out.mkdir(parents=True, exist_ok=True)
    huge = out / "mosaic_5000x4200.png"
    Image.fromarray(np.zeros((4200, 5000, 3), np.uint8)).save(huge)
    lone = out / "image_part_099_mask.png"
    shutil.copy(pair[1], lone)
    notes = out / "field_notes.txt"
    notes.write_text("labels checked on site, 3 Dec\n")
    orphan = out / pair[0].name
    shutil.copy(pair[0], orphan)
    return [huge, lone, notes, orphan]


def stroke_plan(classes: np.ndarray, per_class: int = 2) -> list[tuple[int, list[tuple]]]:
    """Short strokes inside the largest areas of each class: (class, [(x, y), ...])."""
    plan = []
    for c in range(DUBAI.num_classes):
        area = classes == c
        if area.sum() < 200:
            continue
        dist = ndimage.distance_transform_edt(area)
        for _ in range(per_class):
            y, x = np.unravel_index(int(dist.argmax()), dist.shape)
            r = float(dist[y, x])
            if r < 4:
                break
            half = min(3 * r, 40)
            plan.append((c, [(x - half * 0.8, y - r * 0.3), (x, y + r * 0.3), (x + half * 0.8, y)]))
            k = 3 * int(r)
            dist[max(0, y - k) : y + k, max(0, x - k) : x + k] = 0  # next stroke elsewhere
    return plan


def main() -> int:
    """Write map.png and paint.png (the web page's two views) into ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=Path("runs/strokes/dubai-strokes.bundle"))
    p.add_argument("--data", type=Path, default=Path("../shared/data/dubai-aerial/Tile 4"))
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    args = p.parse_args()
    from playwright.sync_api import expect, sync_playwright

    work = Path(tempfile.mkdtemp(prefix="landcover-shots-"))
    (work / "models").mkdir()
    shutil.copy(args.bundle, work / "models" / "dubai.bundle")
    tiles = quarter(args.data, work / "tiles", args.scale)
    port = free_port()
    argv = [sys.executable, "-m", "landcover.cli", "serve", "--port", str(port),
            "--models-dir", str(work / "models"), "--data-dir", str(work / "data")]  # fmt: skip
    env = {"LANDCOVER_API_KEYS": "", "LANDCOVER_LOCAL_KEY": ""}
    with serve(argv, env, port, work / "serve.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/")
        expect(page.locator("#model-select")).to_have_value("dubai")
        args.out.mkdir(parents=True, exist_ok=True)
        refused = refused_files(work / "refused", tiles[0])
        page.set_input_files("#tile-files", [str(p) for p in refused])
        expect(page.locator("#tile-list li.bad")).to_have_count(len(refused))
        page.locator("#tiles-section").screenshot(path=str(args.out / "web_files.png"))
        page.click("#tiles-clear")
        page.set_input_files("#tile-files", [str(x) for t in tiles[:3] for x in t[:2]])
        page.click("#adapt-button")
        expect(page.locator("#adaptations .badge.done")).to_have_count(1, timeout=300_000)
        page.locator("#adaptations-section").screenshot(path=str(args.out / "web_adaptations.png"))
        page.set_input_files("#raster-file", str(tiles[5][0]))
        page.click("#predict-button")
        expect(page.locator("#map-view")).to_be_visible(timeout=120_000)
        page.wait_for_function("document.querySelector('#map img.class-map').naturalWidth > 0")
        page.fill("#opacity", "55")
        page.locator("#map-section").scroll_into_view_if_needed()
        page.click(".leaflet-control-zoom-in")
        page.wait_for_timeout(500)
        page.locator("#map-section").screenshot(path=str(args.out / "web_map.png"))

        page.click("#tab-paint")
        page.set_input_files("#paint-file", str(tiles[6][0]))
        canvas = page.locator("#paint-labels")
        expect(canvas).to_be_visible()
        page.fill("#brush-size", "5")
        height, width = tiles[6][2].shape
        for cls, points in stroke_plan(tiles[6][2]):
            page.locator("#paint-classes input").nth(cls).check()
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            assert box is not None

            def at(x: float, y: float, box: dict = box) -> tuple[float, float]:
                return box["x"] + (x + 0.5) / width * box["width"], box["y"] + (
                    y + 0.5
                ) / height * box["height"]

            page.mouse.move(*at(*points[0]))
            page.mouse.down()
            for pt in points[1:]:
                page.mouse.move(*at(*pt), steps=15)
            page.mouse.up()
        page.click("#paint-add")
        page.locator("#tiles-section").screenshot(path=str(args.out / "web_paint.png"))
        page.click("#adapt-button")
        expect(page.locator("#adaptations .badge.done")).to_have_count(2, timeout=300_000)
        print(page.locator("#adaptations tbody").inner_text())
        browser.close()
    names = ", ".join(f"web_{n}.png" for n in ("files", "adaptations", "map", "paint"))
    print(f"wrote {names} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
