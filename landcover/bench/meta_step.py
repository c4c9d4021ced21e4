"""``landcover bench meta-step``: cost of one meta-training step per task on a U-Net.

For first- and second-order MAML, MAML++ and the adapt-the-decoder mode, on a
segmentation U-Net (default: ``small_unet`` at 64x64 px, 5 inner steps, 5 support + 5
query tiles), it reports seconds per task, tasks per second, peak memory and two ratios:

* ``ratio_to_floor``: to the *floor*, the same number of plain forward+backward passes on
  the same pixels (``steps`` passes on a task's support tiles + one on its query tiles, a
  normal training step), task after task;
* ``ratio_to_batched_floor``: to the same passes with all tasks' tiles in one batch (the
  fair floor of the task-batched rows).

Variants: a sequential task loop (one backward per task), ``task_batch="grouped"`` (the
tasks of a meta-batch through one forward per inner step, exact; see
:mod:`landcover.meta.task_batching`) and :func:`torch.func.vmap` (BatchNorm-free models:
``--norm group``), the decoder-only mode with the encoder run once per task ("body once")
or once per inner step, bf16 autocast and channels_last memory format.

Each configuration runs in its own subprocess so peak memory is its own: on CPU the growth
of the peak resident set over the configuration's run (the kernel's mark reset with
``/proc/self/clear_refs`` just before, ``ru_maxrss`` where that is unavailable;
``tracemalloc`` does not see torch's allocator), on CUDA
``torch.cuda.max_memory_allocated`` above the memory held before.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from landcover.device import check_device

BENCH_NAME = "meta-step"
BENCH_HELP = "seconds/task and peak memory of MAML / FOMAML / MAML++ meta-steps on a U-Net"

#: label, learner (None: the floor), learner options, extra switches.
CONFIGS: list[dict[str, Any]] = [
    {"label": "floor: plain fwd+bwd", "learner": None},
    {"label": "MAML 2nd order, loop", "learner": "maml"},
    {"label": "MAML 2nd order, vmap", "learner": "maml", "options": {"vmap": True}},
    {"label": "FOMAML, loop", "learner": "fomaml"},
    {"label": "FOMAML, vmap", "learner": "fomaml", "options": {"vmap": True}},
    {
        "label": "MAML++ 2nd (LSLR+MSL), loop",
        "learner": "mamlpp",
        "options": {"first_order_epochs": 0},
    },
    {
        "label": "decoder only, body each step",
        "learner": "anil",
        "options": {"adapt": ["head"], "body_once": False},
    },
    {
        "label": "decoder only, body once",
        "learner": "anil",
        "options": {"adapt": ["head"], "body_once": True},
    },
    {"label": "MAML 2nd order, loop, bf16", "learner": "maml", "bf16": True},
    {
        "label": "MAML++ 2nd (LSLR+MSL), loop, bf16",
        "learner": "mamlpp",
        "options": {"first_order_epochs": 0},
        "bf16": True,
    },
    {"label": "floor: plain fwd+bwd, bf16", "learner": None, "bf16": True},
    {"label": "MAML 2nd order, loop, channels_last", "learner": "maml", "channels_last": True},
    {"label": "floor, tasks batched: plain fwd+bwd", "learner": None, "batched": True},
    {"label": "MAML 2nd order, grouped", "learner": "maml", "options": {"task_batch": "grouped"}},
    {"label": "FOMAML, grouped", "learner": "fomaml", "options": {"task_batch": "grouped"}},
    {
        "label": "MAML++ 2nd (LSLR+MSL), grouped",
        "learner": "mamlpp",
        "options": {"first_order_epochs": 0, "task_batch": "grouped"},
    },
    {
        "label": "MAML++ FO (LSLR+MSL), grouped",
        "learner": "mamlpp",
        "options": {"task_batch": "grouped"},
    },
    {
        "label": "MAML++ 2nd (LSLR+MSL), grouped, bf16",
        "learner": "mamlpp",
        "options": {"first_order_epochs": 0, "task_batch": "grouped"},
        "bf16": True,
    },
    {
        "label": "floor, tasks batched, bf16",
        "learner": None,
        "batched": True,
        "bf16": True,
    },
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the bench."""
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--arch", default="small_unet", help="small_unet or smp:<encoder>")
    parser.add_argument("--size", type=int, default=64, help="tile size in pixels")
    parser.add_argument("--steps", type=int, default=5, help="inner steps")
    parser.add_argument("--shots", type=int, default=5, help="support tiles (= query tiles)")
    parser.add_argument("--tasks", type=int, default=2, help="tasks per meta-batch")
    parser.add_argument("--channels", type=int, default=4, help="input bands")
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--norm", choices=["group", "batch", "none"], default="group")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="timing per config")
    parser.add_argument(
        "--rounds", type=int, default=3, help="least timing rounds (config + both floors)"
    )
    parser.add_argument("--only", nargs="+", metavar="LABEL", help="substrings of config labels")


def _setup(cfg: dict[str, Any], s: dict[str, Any]) -> tuple[Any, Any, list[Any]]:
    import torch
    from torch import nn

    from landcover.meta.registry import build_learner
    from landcover.models import build_model
    from landcover.tasks.task import Task

    torch.manual_seed(0)
    device = torch.device(s["device"])
    model = build_model(s["arch"], s["channels"], s["classes"], norm=s["norm"]).to(device)
    fmt = torch.channels_last if cfg.get("channels_last") else torch.contiguous_format
    model = model.to(memory_format=fmt)
    n, c, hw = s["shots"], s["channels"], s["size"]
    tasks = []
    for _ in range(s["tasks"]):
        x = torch.randn(2 * n, c, hw, hw, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, s["classes"], (2 * n, hw, hw), device=device)
        tasks.append(Task(x[:n], y[:n], x[n:], y[n:]))
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    if cfg["learner"] is None:
        return model, loss_fn, tasks
    options = {"inner_lr": 0.01, "steps": s["steps"], **cfg.get("options", {})}
    return build_learner(cfg["learner"], model, loss_fn, **options), loss_fn, tasks


def _step_fn(cfg: dict[str, Any], s: dict[str, Any], obj: Any, loss_fn: Any, tasks: list[Any]):
    import torch

    def floor() -> None:
        for t in tasks:
            for _ in range(s["steps"]):
                loss_fn(obj(t.support_x), t.support_y).backward()
            loss_fn(obj(t.query_x), t.query_y).backward()

    if cfg.get("batched"):
        fields = ("support_x", "support_y", "query_x", "query_y")
        sx, sy, qx, qy = (torch.cat([getattr(t, f) for t in tasks]) for f in fields)

        def floor() -> None:
            for _ in range(s["steps"]):
                loss_fn(obj(sx), sy).backward()
            loss_fn(obj(qx), qy).backward()

    def meta() -> None:
        obj.meta_backward(tasks)

    fn = floor if cfg["learner"] is None else meta
    if not cfg.get("bf16"):
        return fn

    def autocast() -> None:
        with torch.autocast(device_type=s["device"], dtype=torch.bfloat16):
            fn()

    return autocast


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs``); return the current RSS in kB.

    Without it the peak of the imports and the model construction would hide the step's.
    Elsewhere, fall back to ``ru_maxrss`` (a lower bound of the step's growth).
    """
    import gc
    import resource

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        rss = _status_kb("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss() -> int:
    import resource

    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _timed(fn: Any, obj: Any, sync: Any) -> float:
    start = time.perf_counter()
    fn()
    obj.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - start


def worker(payload: str) -> dict[str, Any]:
    """Run one configuration in this process and return its measurements.

    Peak memory comes from a first phase that runs the configuration alone. Timing then
    interleaves the configuration with the per-task floor and the task-batched floor in
    rounds (at least ``--rounds``, until ``--min-seconds`` of the configuration), and keeps
    each one's best round: other load on the machine hits all three alike, so the ratios
    stay fair even when absolute times do not.
    """
    import torch

    job = json.loads(payload)
    cfg, s = job["config"], job["settings"]
    cuda = s["device"] == "cuda"
    obj, loss_fn, tasks = _setup(cfg, s)
    fn = _step_fn(cfg, s, obj, loss_fn, tasks)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    rss0 = _reset_peak_rss()
    _timed(fn, obj, sync)  # warm-up, and the peak
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mb = (_peak_rss() - rss0) / 1024
    refs: dict[str, Any] = {}
    plain = cfg["learner"] is None and not (cfg.get("bf16") or cfg.get("channels_last"))
    same = "batched_floor" if cfg.get("batched") else "floor"
    for key, ref in (
        ("floor", {"learner": None}),
        ("batched_floor", {"learner": None, "batched": True}),
    ):
        if plain and key == same:
            continue  # this row is that floor: its own timing is the reference
        r_obj, r_loss, _ = _setup(ref, s)
        refs[key] = (_step_fn(ref, s, r_obj, r_loss, tasks), r_obj)
        _timed(*refs[key], sync)  # warm-up
    best = {"config": float("inf"), **{k: float("inf") for k in refs}}
    rounds, spent = 0, 0.0
    while rounds < s.get("rounds", 3) or spent < s["min_seconds"]:
        for key, (r_fn, r_obj) in refs.items():
            best[key] = min(best[key], _timed(r_fn, r_obj, sync))
        t = _timed(fn, obj, sync)
        best["config"], spent, rounds = min(best["config"], t), spent + t, rounds + 1
        if rounds >= 200:
            break
    if plain:
        best[same] = best["config"]
    n = len(tasks)
    per_task = best["config"] / n
    return {
        "seconds_per_task": per_task,
        "tasks_per_second": 1.0 / per_task,
        "peak_mb": peak_mb,
        "runs": rounds,
        "ratio_to_floor": best["config"] / best["floor"],
        "ratio_to_batched_floor": best["config"] / best["batched_floor"],
        "floor_seconds_per_task": best["floor"] / n,
        "batched_floor_seconds_per_task": best["batched_floor"] / n,
    }


def _run_config(cfg: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps({"config": cfg, "settings": settings})
    cmd = [sys.executable, "-m", "landcover.bench.meta_step", payload]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:200]}
    return json.loads(lines[-1])


def check_args(args: argparse.Namespace) -> None:
    """Refuse impossible settings before any subprocess starts (``ValueError``)."""
    from landcover.models import build_model

    least = {"size": 1, "steps": 0, "shots": 1, "tasks": 1, "channels": 1, "classes": 2}
    least |= {"rounds": 1, "min_seconds": 0}
    bad = [f"--{k.replace('_', '-')} >= {v}" for k, v in least.items() if getattr(args, k) < v]
    if bad:
        raise ValueError(f"meta-step needs {', '.join(bad)}")
    check_device(args.device)
    build_model(args.arch, args.channels, args.classes, norm=args.norm)  # names the valid ones


def run(args: argparse.Namespace) -> int:
    """Run every configuration (one subprocess each), print the table, write JSON.

    Returns:
        ``0``, or ``1`` when a configuration failed (its error is printed under the table).
    """
    from rich.console import Console
    from rich.table import Table

    check_args(args)

    settings = {
        k: getattr(args, k)
        for k in (
            "device",
            "arch",
            "size",
            "steps",
            "shots",
            "tasks",
            "channels",
            "classes",
            "norm",
            "min_seconds",
            "rounds",
        )
    }
    configs = [c for c in CONFIGS if not args.only or any(o in c["label"] for o in args.only)]
    if args.only and not configs:
        raise SystemExit(
            f"--only matched no configuration; labels: {[c['label'] for c in CONFIGS]}"
        )
    results = []
    start = time.perf_counter()
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    for cfg in configs:
        with console.status(f"meta-step: {cfg['label']}"):
            res = _run_config(cfg, settings)
        results.append({"label": cfg["label"], "learner": cfg["learner"], **res})
    title = (
        f"meta-step: {args.arch} {args.size}px, {args.steps} inner steps, "
        f"{args.shots}+{args.shots} tiles, norm={args.norm}, {args.device}"
    )
    table = Table(title=title)
    for col in ("config", "s/task", "tasks/s", "x floor", "x batched floor", "peak MB"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for r in results:
        if "error" in r:
            table.add_row(r["label"], "failed", "", "", "", "")
            continue
        table.add_row(
            r["label"],
            f"{r['seconds_per_task']:.4f}",
            f"{r['tasks_per_second']:.2f}",
            f"{r['ratio_to_floor']:.2f}",
            f"{r['ratio_to_batched_floor']:.2f}",
            f"{r['peak_mb']:.0f}",
        )
    console.print(table)
    failed = [r for r in results if "error" in r]
    for r in failed:
        console.print(f"{r['label']} failed: {r['error']}", markup=False)
    payload = {
        "bench": BENCH_NAME,
        "settings": settings,
        "results": results,
        "wall_seconds": time.perf_counter() - start,
        "machine": platform.platform(),
        "memory_method": "cuda max_memory_allocated"
        if args.device == "cuda"
        else "peak RSS growth (VmHWM after clear_refs)",
    }
    console.print(f"wall time {payload['wall_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=args.json.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
        os.replace(tmp, args.json)
        console.print(f"results: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1])))
