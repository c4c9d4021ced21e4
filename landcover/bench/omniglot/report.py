"""Table, JSON and bar plot of ``landcover bench omniglot`` results."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write the report atomically (temp file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(report, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _cell(acc: dict[str, float] | None) -> str:
    if not acc:
        return "-"
    return f"{100 * acc['accuracy']:.1f} ± {100 * acc['ci95']:.1f}"


def print_table(report: dict[str, Any], console: Console | None = None) -> None:
    """Accuracy (%) with 95% intervals per learner and setting, published anchors beside."""
    console = console or Console(width=160)
    settings = report["settings"]
    has_runs = any("lake_runs" in r for r in report["rows"])
    title = (
        f"Omniglot ({report['mode']}): held-out {', '.join(report['split']['test_alphabets'])}"
        f" ({report['split']['test_classes']} classes), accuracy % ± 95% CI"
    )
    table = Table(title=title)
    table.add_column("learner")
    table.add_column("family")
    for s in settings:
        table.add_column(s, justify="right")
    table.add_column("paper 5w1s/20w1s", justify="right")
    if has_runs:
        table.add_column("Lake runs err %", justify="right")
    table.add_column("episodes", justify="right")
    table.add_column("train it", justify="right")
    table.add_column("train s", justify="right")
    table.add_column("eval s", justify="right")
    for r in report["rows"]:
        anchors = r.get("anchors") or {}
        paper = "/".join(f"{anchors[k]:g}" if k in anchors else "-" for k in ("5w1s", "20w1s"))
        cells = [r["label"], r["family"], *[_cell(r["accuracy"].get(s)) for s in settings], paper]
        if has_runs:
            lr = r.get("lake_runs")
            cells.append(f"{100 * lr['error_rate']:.1f}" if lr else "-")
        train = r.get("train", {})
        eps = {str(a.get("episodes")) for a in r["accuracy"].values()}
        cells.append("/".join(sorted(eps)) or "-")
        cells += [
            str(train.get("iterations", "-")),
            str(train.get("seconds", "-")),
            str(r.get("eval_seconds", "-")),
        ]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"total {report['total_seconds']} s wall, {report.get('total_cpu_seconds', '-')} s CPU "
        f"on {report['threads']} thread(s)"
        + (f" x {report['jobs']} processes" if report.get("jobs", 1) > 1 else "")
    )


def merge_reports(reports: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """Merge reports of runs over disjoint row subsets (e.g. parallel processes).

    Rows are sorted by ``order`` (row names); wall time is the longest part's, CPU time
    the sum; each part's budget is kept under ``"parts"``.

    Raises:
        ValueError: If no report is given or two parts contain the same row.
    """
    if not reports:
        raise ValueError("nothing to merge: give at least one omniglot JSON")
    rows = [r for rep in reports for r in rep["rows"]]
    names = [r["name"] for r in rows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"rows {dupes} appear in several reports; merge disjoint runs")
    rank = {n: i for i, n in enumerate(order)}
    merged = dict(reports[0])
    merged["rows"] = sorted(rows, key=lambda r: rank.get(r["name"], len(rank)))
    merged["total_seconds"] = max(rep.get("total_seconds", 0.0) for rep in reports)
    merged["total_cpu_seconds"] = round(
        sum(rep.get("total_cpu_seconds", 0.0) for rep in reports), 1
    )
    merged["parts"] = [
        {
            "rows": [r["name"] for r in rep["rows"]],
            "budget": rep["budget"],
            "total_seconds": rep.get("total_seconds"),
            "total_cpu_seconds": rep.get("total_cpu_seconds"),
        }
        for rep in reports
    ]
    return merged


def merge_files(
    paths: list[Path], order: list[str], json_path: Path, extra: dict[str, Any] | None = None
) -> int:
    """Merge result JSONs of runs over disjoint rows; write the JSON, the plot beside it.

    Args:
        paths: The parts' JSON files.
        order: Row names in table order.
        json_path: Merged JSON; the plot is written next to it (``.png``).
        extra: Keys set on the merged report before it is written (e.g. ``jobs``).

    Returns:
        0, or 2 if a part cannot be read or the parts overlap (the message is printed).
    """
    try:
        report = merge_reports([json.loads(p.read_text()) for p in paths], order)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot merge {[str(p) for p in paths]}: {exc}")
        return 2
    report.update(extra or {})
    json_path = write_json(report, json_path)
    png = plot(report, json_path.with_suffix(".png"))
    print_table(report)
    print(f"wrote {json_path} and {png}")
    return 0


def plot(report: dict[str, Any], path: Path) -> Path:
    """Grouped bar plot of accuracy by learner and setting, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, settings = report["rows"], report["settings"]
    x = np.arange(len(rows))
    width = 0.8 / max(len(settings), 1)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(rows) + 2), 4.5))
    for j, s in enumerate(settings):
        acc = [100 * r["accuracy"].get(s, {}).get("accuracy", np.nan) for r in rows]
        ci = [100 * r["accuracy"].get(s, {}).get("ci95", 0.0) for r in rows]
        ax.bar(x + (j - (len(settings) - 1) / 2) * width, acc, width, yerr=ci, capsize=2, label=s)
    ax.set_xticks(x)
    ax.set_xticklabels([r["label"] for r in rows], rotation=35, ha="right")
    ax.set_ylabel("accuracy on held-out alphabets (%)")
    ax.set_ylim(0, 100)
    ax.axhline(20, color="grey", lw=0.6, ls=":")
    ax.axhline(5, color="grey", lw=0.6, ls=":")
    ax.set_title(f"Omniglot few-shot accuracy ({report['mode']} budget), 95% CI")
    ax.legend(ncol=len(settings), loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
