"""``landcover bench read-speed``: reading large image/mask pairs of the users' folder format.

Writes one region of ``--images`` pairs of ``--size``² px (DeepGlobe's 2448 by default): RGB
JPEG images with colour-coded masks, half of them RGB PNGs and half palette ("P") PNGs, and
two ignore colours in the class file, as real datasets come (issue 11). It then times, per
image, (1) loading a tile through the folder reader (image decode + mask decode through the
class file, palette lookup included) and (2) ``data inspect``'s full check
(:func:`landcover.geo.folder.find_problems`). The target is one image per second or better.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_NAME = "read-speed"
BENCH_HELP = "images per second of the folder reader and data inspect on large RGB/palette masks"

COLOURS = [(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41)]
IGNORE = [(155, 155, 155), (0, 0, 0)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the bench."""
    parser.add_argument("--images", type=int, default=6, help="image/mask pairs")
    parser.add_argument("--size", type=int, default=2448, help="image side in pixels")
    parser.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")


def write_region(root: Path, n: int, size: int) -> Path:
    """One region of ``n`` pairs (RGB and palette masks alternately) and its class file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    region = root / "region"
    (region / "images").mkdir(parents=True)
    (region / "masks").mkdir(parents=True)
    palette = COLOURS + IGNORE
    cls = "classes:\n" + "".join(f"  - {{name: c{i}, color: {list(c)}}}\n" for i, c in
                                 enumerate(COLOURS))  # fmt: skip
    (root / "classes.yaml").write_text(cls + f"ignore: {[list(c) for c in IGNORE]}\n")
    for i in range(n):
        coarse = rng.integers(0, len(palette), (size // 64 + 1, size // 64 + 1))
        idx = np.kron(coarse, np.ones((64, 64), dtype=np.int64))[:size, :size].astype(np.uint8)
        img = (np.asarray(palette, np.uint8)[idx] // 2 + rng.integers(0, 60, (size, size, 3),
                                                                      dtype=np.uint8))  # fmt: skip
        Image.fromarray(img).save(region / "images" / f"t{i}.jpg", quality=90)
        if i % 2:
            p = Image.fromarray(idx, mode="P")
            p.putpalette([v for c in palette for v in c])
            p.save(region / "masks" / f"t{i}.png")
        else:
            Image.fromarray(np.asarray(palette, np.uint8)[idx]).save(region / "masks" / f"t{i}.png")
    return root


def run(args: argparse.Namespace) -> int:
    """Run the bench, print a table, write JSON."""
    from landcover.geo.folder import find_problems, read_regions

    with tempfile.TemporaryDirectory(prefix="lc-read-") as tmp:
        root = write_region(Path(tmp), args.images, args.size)
        (region,) = read_regions(root, validate=False, cache=False)
        start = time.perf_counter()
        for i in range(len(region)):
            sample = region[i]
            assert sample["mask"].shape == (args.size, args.size)
        load = time.perf_counter() - start
        start = time.perf_counter()
        problems = find_problems(root)
        inspect = time.perf_counter() - start
    if problems:
        raise RuntimeError(f"the bench's own data has problems: {problems[:3]}")
    rows = {
        "load (reader)": args.images / load,
        "data inspect check": args.images / inspect,
    }
    print(f"{args.images} pairs of {args.size}² px (JPEG + RGB/palette PNG masks)")
    for name, rate in rows.items():
        print(f"  {name:<20} {rate:6.2f} images/s")
    met = min(rows.values()) >= 1.0
    print(f"target (>= 1 image/s): {'met' if met else 'NOT met'}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"bench": BENCH_NAME, "images": args.images, "size": args.size,
                   "images_per_second": rows, "target_met": met}  # fmt: skip
        tmp_path = path.with_name(path.name + ".tmp")
        tmp_path.write_text(json.dumps(payload, indent=2))
        tmp_path.replace(path)
        print(f"wrote {path}")
    return 0
