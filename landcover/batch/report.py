"""The run report: JSON for machines, Markdown for people.

Per region: how its model was obtained and the adaptation's scores (support mIoU before
and after, steps kept, held-out tiles), scenes mapped / skipped / failed, the mosaic and
the STAC ItemCollection. Per scene: status, seconds, pixels, blocks, the worker, class
areas in km², and the error of a failed scene. Totals: wall time and throughput.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landcover.batch.records import atomic_write_text, write_json


def scene_row(region: str, scene: str, status: str, record: dict[str, Any] | None = None,
              error: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One scene's line of the report (``status``: mapped, skipped or failed)."""
    row: dict[str, Any] = {"region": region, "scene": scene, "status": status}
    if record is not None:
        areas = record["areas"]
        row.update(
            seconds=round(float(record["seconds"]), 3),
            width=record["width"],
            height=record["height"],
            pixels=record["width"] * record["height"],
            mapped_pixels=areas["pixels"],
            blocks=record.get("blocks", 1),
            worker=record.get("worker"),
            class_km2={n: c["km2"] for n, c in areas["classes"].items()},
            classes=record["classes"],
        )
    if error is not None:
        row["error"] = error
    return row


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    t = report["totals"]
    lines = [
        "# landcover batch report",
        "",
        f"- manifest: `{report['manifest']}`",
        f"- scheduler: {report['scheduler']} ({report['workers']} workers, "
        f"{report['threads']} threads)",
        f"- wall time: {report['wall_seconds']:.1f} s; scenes mapped {t['mapped']}, skipped "
        f"{t['skipped']} (complete and valid), failed {t['failed']}",
        f"- pixels mapped: {t['pixels']:,} in {t['scene_seconds']:.1f} scene-seconds "
        f"({_fmt(t['pixels_per_second'], 0)} px/s of wall time)",
        f"- result: {'everything succeeded' if report['ok'] else 'FAILURES (see below)'}",
        "",
        "## Regions",
        "",
        "| region | model | support mIoU before | after | steps kept / tried | held-out tiles "
        "| mapped | skipped | failed | mosaic | STAC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["regions"]:
        g = r.get("guard_report") or {}
        steps = f"{g.get('steps_kept')} / {g.get('steps_tried')}" if g else "-"
        lines.append(
            f"| {r['name']} | {r.get('adapted', '-')} | {_fmt(g.get('support_miou_before'))} "
            f"| {_fmt(g.get('support_miou_after'))} | {steps} | {_fmt(g.get('held_out_tiles'))} "
            f"| {r['mapped']} | {r['skipped']} | {r['failed']} "
            f"| {', '.join(f'`{m}`' for m in r.get('mosaics', [])) or '-'} "
            f"| {'`' + r['stac'] + '`' if r.get('stac') else '-'} |"
        )
    lines += ["", "## Scenes", "", "| region | scene | status | s | pixels | blocks | "
              "class areas (km²) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in report["scenes"]:
        areas = ", ".join(f"{n} {_fmt(a, 4)}" for n, a in (s.get("class_km2") or {}).items())
        cells = [s["region"], s["scene"], s["status"], _fmt(s.get("seconds"), 2),
                 _fmt(s.get("pixels")), _fmt(s.get("blocks")), areas or "-"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if report["failures"]:
        lines += ["", "## Failures", ""]
        lines += [f"- **{f['region']}/{f['scene']}**: {f['error']}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` (atomically)."""
    return (write_json(folder / "report.json", report),
            atomic_write_text(folder / "report.md", markdown(report)))  # fmt: skip
