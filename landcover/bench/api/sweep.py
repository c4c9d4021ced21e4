"""The concurrency sweep of ``landcover bench api``: predicts and status polls under load.

For each level of the sweep (1, 8, 32, 64 clients by default) the clients run for a fixed
time against one server; each client alternates a prediction (``POST .../predict`` of a
small GeoTIFF) and a status poll (``GET /v1/adaptations/{id}``), spreading over several
API keys like several tenants. A client that gets a 429 waits as ``Retry-After`` asks
(at most 1 s), as a well-behaved client does. Meanwhile a separate *process* (so that the
clients' threads do not delay it) probes ``GET /ready`` every 0.2 s.

Per level it reports p50/p95 latency of predicts and of polls, the counts of 2xx, 429,
5xx and other answers (transport errors count as 5xx: the server failed to answer), and
the slowest ``/ready``. The goal is no server error at 64 clients and ``/ready`` under 1 s
throughout.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def _probe_ready(base: str, stop: Any, out: Any, period: float = 0.2) -> None:
    """Child process: GET /ready every ``period`` s until ``stop``; sends the latencies."""
    import httpx

    times, bad = [], 0
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                ok = client.get("/ready").status_code == 200
            except httpx.HTTPError:
                ok = False
            times.append(time.perf_counter() - start)
            bad += not ok
            stop.wait(period)
    p95 = float(np.percentile(times, 95)) if times else float("nan")
    out.put({"ready_probes": len(times), "ready_not_200": bad,
             "ready_max_s": max(times, default=float("nan")), "ready_p95_s": p95})  # fmt: skip


def adapt_for(base: str, key: str, files: list[Any]) -> tuple[str, str]:
    """Adapt the base model once for ``key`` (1 step); returns ``(key, adaptation id)``."""
    import httpx

    headers = {"X-API-Key": key}
    with httpx.Client(base_url=base, timeout=600) as client:
        r = client.post("/v1/adaptations", headers=headers, data={"model": "base", "steps": "1"},
                        files=files)  # fmt: skip
        r.raise_for_status()
        aid = r.json()["id"]
        wait_for_adaptation(client, aid, headers, interval=0.05)
    return key, aid


def wait_for_adaptation(
    client: Any, aid: str, headers: dict[str, str], *, interval: float
) -> dict[str, Any]:
    """Poll adaptation ``aid`` until it is done (honouring 429 ``Retry-After``); its body.

    Raises:
        RuntimeError: The adaptation failed.
    """
    while True:
        r = client.get(f"/v1/adaptations/{aid}", headers=headers)
        if r.status_code == 429:
            time.sleep(float(r.headers.get("retry-after", "1")))
            continue
        body = r.json()
        if body["status"] in ("done", "failed"):
            break
        time.sleep(interval)
    if body["status"] != "done":
        raise RuntimeError(f"adaptation failed: {body['reason']}")
    return body


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def sweep_level(
    base: str, clients: int, seconds: float, targets: Sequence[tuple[str, str]], raster: bytes
) -> dict[str, Any]:
    """Run ``clients`` clients for ``seconds`` s; ``targets``: (API key, adaptation id)."""
    import httpx

    lock = threading.Lock()
    latency: dict[str, list[float]] = {"predict": [], "poll": []}
    codes: dict[str, Counter[str]] = {"predict": Counter(), "poll": Counter()}
    end = time.monotonic() + seconds

    def record(kind: str, start: float, status: int | None, retry: str | None) -> float:
        elapsed = time.perf_counter() - start
        klass = ("5xx" if status is None or status >= 500 else "429" if status == 429
                 else "2xx" if status < 300 else "other")  # fmt: skip
        with lock:
            codes[kind][klass] += 1
            if klass == "2xx":
                latency[kind].append(elapsed)
        if status == 429:
            return min(1.0, float(retry or 1))
        return 0.0

    def client_loop(i: int) -> None:
        key, aid = targets[i % len(targets)]
        headers = {"X-API-Key": key}
        with httpx.Client(base_url=base, timeout=300) as client:
            while time.monotonic() < end:
                for kind in ("predict", "poll"):
                    start = time.perf_counter()
                    try:
                        if kind == "predict":
                            r = client.post(f"/v1/adaptations/{aid}/predict", headers=headers,
                                            files={"raster": ("q.tif", raster)})  # fmt: skip
                        else:
                            r = client.get(f"/v1/adaptations/{aid}", headers=headers)
                        pause = record(kind, start, r.status_code, r.headers.get("retry-after"))
                    except httpx.HTTPError:
                        pause = record(kind, start, None, None)
                    if pause:
                        time.sleep(pause)

    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    prober = ctx.Process(target=_probe_ready, args=(base, stop, out), daemon=True)
    prober.start()
    wall = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    wall = time.perf_counter() - wall
    stop.set()
    ready = out.get(timeout=60)
    prober.join(10)
    row: dict[str, Any] = {"clients": clients, "wall_s": wall}
    for kind in ("predict", "poll"):
        row[kind] = {
            "p50_s": _pct(latency[kind], 50),
            "p95_s": _pct(latency[kind], 95),
            "ok": codes[kind]["2xx"],
            "http_429": codes[kind]["429"],
            "http_5xx": codes[kind]["5xx"],
            "other": codes[kind]["other"],
            "ok_per_s": codes[kind]["2xx"] / wall,
        }
    row.update(ready)
    return row


def sweep_table(rows: list[dict[str, Any]], setup: str) -> Any:
    """The rich table of the sweep."""
    from rich.table import Table

    table = Table(title="landcover bench api: concurrency sweep (predicts + status polls)",
                  caption=setup)  # fmt: skip
    for col in ("clients", "predict p50/p95", "predict ok/s", "poll p50/p95", "429", "5xx",
                "/ready max"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        p, q = r["predict"], r["poll"]
        table.add_row(
            str(r["clients"]),
            f"{p['p50_s']:.3f} / {p['p95_s']:.3f} s",
            f"{p['ok_per_s']:.2f}",
            f"{q['p50_s']:.3f} / {q['p95_s']:.3f} s",
            str(p["http_429"] + q["http_429"]),
            str(p["http_5xx"] + q["http_5xx"]),
            f"{r['ready_max_s']:.3f} s",
        )
    return table


def sweep_plot(rows: list[dict[str, Any]], path: Any) -> None:
    """PNG of the sweep: p50/p95 latency by clients, and 429/5xx counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = [r["clients"] for r in rows]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, colour in (("predict", "tab:blue"), ("poll", "tab:orange")):
        ax.plot(clients, [r[kind]["p50_s"] for r in rows], "o-", color=colour, label=f"{kind} p50")
        ax.plot(clients, [r[kind]["p95_s"] for r in rows], "s--", color=colour,
                label=f"{kind} p95")  # fmt: skip
    ax.plot(clients, [r["ready_max_s"] for r in rows], "^:", color="tab:green", label="/ready max")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="seconds",
           title="latency of successful requests")  # fmt: skip
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    width = 0.35
    x = np.arange(len(rows))
    bx.bar(x - width / 2, [r["predict"]["http_429"] + r["poll"]["http_429"] for r in rows],
           width, label="429 (retry after)")  # fmt: skip
    bx.bar(x + width / 2, [r["predict"]["http_5xx"] + r["poll"]["http_5xx"] for r in rows],
           width, label="5xx", color="tab:red")  # fmt: skip
    bx.set(xticks=x, xticklabels=[str(c) for c in clients], xlabel="concurrent clients",
           ylabel="responses", title="refused (429) and failed (5xx)")  # fmt: skip
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
