"""Pictures and Markdown of ``landcover bench landscape`` (see :mod:`landcover.bench.landscape`).

Three PNGs (matplotlib, Agg backend) and one Markdown page that explains them with the
numbers the bench measured; every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

if TYPE_CHECKING:
    from landcover.bench.landscape import Problem

TASK_COLORS = ("tab:blue", "tab:orange")
EXTENT = (-3.2, 3.4, -2.6, 3.2)  # x0, x1, y0, y1


def _loss_grid(task: Any, n: int = 160) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs = torch.linspace(EXTENT[0], EXTENT[1], n, dtype=torch.float64)
    ys = torch.linspace(EXTENT[2], EXTENT[3], n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    w = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (n*n, 2)
    pred = task.support_x @ w.T  # (shots, n*n)
    loss = ((pred - task.support_y) ** 2).mean(0).reshape(n, n)
    return gx, gy, loss


def _draw_tasks(ax: Any, train: Problem, test: Problem, shown: list[int]) -> None:
    ax.scatter(train.optima[:, 0], train.optima[:, 1], s=6, c="0.75", label="training-task optima")
    for color, i in zip(TASK_COLORS, shown):
        gx, gy, loss = _loss_grid(test.tasks[i])
        levels = torch.logspace(-2, 1.3, 9).tolist()
        ax.contour(gx, gy, loss, levels=levels, colors=color, linewidths=0.7, alpha=0.8)
        w = test.optima[i]
        ax.plot(w[0], w[1], "x", color=color, ms=9, mew=2.5)
    ax.set_xlim(EXTENT[0], EXTENT[1])
    ax.set_ylim(EXTENT[2], EXTENT[3])
    ax.set_aspect("equal")


def _draw_adaptation(ax: Any, r: dict[str, Any], shown: list[int], method_color: str) -> None:
    for color, i in zip(TASK_COLORS, shown):
        path = torch.tensor(r["shown"][str(i)]["path"])
        ax.plot(path[:, 0], path[:, 1], "-o", color=color, ms=3, lw=1.6)
    init = r["init"]
    ax.plot(init[0], init[1], "*", color=method_color, ms=15, mec="k", zorder=5)


def _save(fig: Any, path: Path) -> Path:
    from landcover.bench.landscape import _atomic_write

    _atomic_write(path, lambda p: fig.savefig(p, dpi=72, format="png", bbox_inches="tight"))
    plt.close(fig)
    return path


def render(results: dict[str, Any], train: Problem, test: Problem, out: Path) -> list[Path]:
    """Write ``out/img/landscape_{paths,inits,distance}.png`` and ``out/landscape.md``."""
    from landcover.bench.landscape import COLORS, _atomic_write

    shown, methods, k = results["shown_tasks"], results["methods"], results["eval_steps"]
    img = out / "img"
    files = []

    fig, axes = plt.subplots(2, 2, figsize=(10, 9.4))
    for ax, (method, r) in zip(axes.flat, methods.items()):
        _draw_tasks(ax, train, test, shown)
        meta = torch.tensor(r["meta_path"])
        ax.plot(
            meta[:, 0],
            meta[:, 1],
            "-",
            color=COLORS[method],
            lw=1.0,
            alpha=0.9,
            label="meta-training path",
        )
        ax.plot(meta[0, 0], meta[0, 1], "ks", ms=6, label="start")
        _draw_adaptation(ax, r, shown, COLORS[method])
        d = [r["shown"][str(i)]["distance"][-1] for i in shown]
        ax.set_title(
            f"{method}: after {k} steps, distance {d[0]:.2f} (blue) / {d[1]:.2f} (orange)",
            fontsize=9,
        )
    axes.flat[0].legend(loc="lower left", fontsize=7)
    files.append(_save(fig, img / "landscape_paths.png"))

    fig, ax = plt.subplots(figsize=(6.5, 6))
    _draw_tasks(ax, train, test, shown)
    for method, r in methods.items():
        _draw_adaptation(ax, r, shown, COLORS[method])
        ax.plot([], [], "*", color=COLORS[method], ms=12, mec="k", label=method)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"meta-initialisations (stars) and {k} adaptation steps per task", fontsize=9)
    files.append(_save(fig, img / "landscape_inits.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = list(range(k + 1))
    for method, r in methods.items():
        ax.plot(steps, r["mean_distance"], color=COLORS[method], marker="o", ms=3, label=method)
    ax.set_xlabel("adaptation steps k")
    ax.set_ylabel("mean distance to the task optimum")
    ax.set_yscale("log")
    ax.axvline(results["train_steps"], color="0.6", ls=":", lw=1)
    ax.legend(fontsize=8)
    files.append(_save(fig, img / "landscape_distance.png"))

    md = out / "landscape.md"
    _atomic_write(md, lambda p: p.write_text(markdown(results, n_test=len(test.tasks))))
    files.append(md)
    return files


def markdown(results: dict[str, Any], n_test: int) -> str:
    """The explanatory page, with the measured numbers."""
    k, ks, alpha = results["eval_steps"], results["train_steps"], results["alpha"]
    methods = results["methods"]
    cols = list(range(k + 1))
    best = {c: min(methods, key=lambda m: methods[m]["mean_distance"][c]) for c in cols}
    start = "({:.1f}, {:.1f})".format(*results["start"])
    n_train, shots = results["train_tasks"], results["support_points"]
    lines = [
        "# Loss landscapes: where each method puts the initialisation",
        "",
        "Generated by `landcover bench landscape --out docs` (the meta-learning notes, "
        "section 3.4). Two parameters `w = (w1, w2)`; each task is a noise-free linear "
        "regression `y = <w*, x>` whose loss is an elongated bowl around its optimum `w*` "
        "(optima spread over a half ring, random orientation and curvature per task). "
        "Pre-training (joint training on the pooled tasks), MAML, first-order MAML and "
        f"Reptile are meta-trained by the library's learners from the same start {start} "
        f"with {ks} inner steps of rate {alpha}, then every method adapts to a task with "
        f"the same plain gradient steps (rate {alpha}) on its {shots} support points.",
        "",
        "## Pictures",
        "",
        "- `img/landscape_paths.png`: one panel per method. Blue and orange contours are "
        "the support losses of two test tasks (crosses: their optima); grey dots are the "
        f"optima of the {n_train} training tasks. The thin coloured line is the meta-training "
        "path from the start (black square) to the meta-initialisation (star); the blue "
        f"and orange polylines are the {k} adaptation steps from the star towards each "
        "task's optimum. The title gives the distance left after those steps.",
        "",
        "![paths](img/landscape_paths.png)",
        "",
        "- `img/landscape_inits.png`: the four initialisations on one picture, with their "
        "adaptation paths to the same two tasks: how far each adaptation must travel.",
        "",
        "![inits](img/landscape_inits.png)",
        "",
        f"- `img/landscape_distance.png`: distance to the task optimum after k = 0..{k} "
        f"adaptation steps, mean over {n_test} unseen test tasks with 95% intervals "
        f"(dotted line: the {ks} steps used in meta-training).",
        "",
        "![distance](img/landscape_distance.png)",
        "",
        "## Numbers",
        "",
        f"Mean distance from the adapted parameters to the task optimum after k steps "
        f"({n_test} test tasks, ± 95% interval); `init` is where meta-training ended, "
        "`closed form` the exact fixed point of that method's full-batch meta-objective "
        f"on the {n_train} training tasks (the losses are quadratic: pre-training solves "
        "`sum_i Q_i (w - w*_i) = 0`, MAML `sum_i M_i^k Q_i M_i^k (w - w*_i) = 0` with "
        "`M = I - alpha H`, FOMAML `sum_i Q_i M_i^k (w - w*_i) = 0`, Reptile "
        "`sum_i (I - M_i^k)(w - w*_i) = 0`).",
        "",
        "| method | init | closed form | " + " | ".join(f"k={c}" for c in cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    for m, r in methods.items():
        dist = " | ".join(
            f"{d:.3f} ± {e:.3f}" for d, e in zip(r["mean_distance"], r["distance_ci95"])
        )
        init = "({:+.3f}, {:+.3f})".format(*r["init"])
        ideal = "({:+.3f}, {:+.3f})".format(*r["closed_form_init"])
        lines.append(f"| {m} | {init} | {ideal} | {dist} |")
    lines += [
        "",
        "Paired difference of the distance to pre-training's (same test tasks; negative "
        "means closer than pre-training), mean ± 95% interval:",
        "",
        "| method | " + " | ".join(f"k={c}" for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for m, r in methods.items():
        if m == "pre-training":
            continue
        pair = r["paired_vs_pretraining"]
        diff = " | ".join(f"{d:+.3f} ± {e:.3f}" for d, e in zip(pair["mean"], pair["ci95"]))
        lines.append(f"| {m} | {diff} |")
    lines += [
        "",
        "Query mean squared error after k steps (what MAML's meta-objective measures), "
        f"mean over the {n_test} test tasks ± 95% interval:",
        "",
        "| method | " + " | ".join(f"k={c}" for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for m, r in methods.items():
        mse = " | ".join(
            f"{d:.3f} ± {e:.3f}" for d, e in zip(r["mean_query_mse"], r["query_mse_ci95"])
        )
        lines.append(f"| {m} | {mse} |")
    lines += [
        "",
        "The two tasks of the pictures (distance after k steps):",
        "",
        "| method | task | " + " | ".join(f"k={c}" for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for m, r in methods.items():
        for name, i in zip(("blue", "orange"), results["shown_tasks"]):
            d = " | ".join(f"{v:.3f}" for v in r["shown"][str(i)]["distance"])
            lines.append(f"| {m} | {name} | {d} |")
    lines += [
        "",
        "## Reading",
        "",
        "Closest to the optima on average, by number of steps: "
        + ", ".join(f"k={c}: {best[c]}" for c in cols)
        + ". Pre-training minimises the pooled loss, so it weighs every task by its "
        "steep directions, exactly the directions a few gradient steps fix anyway; MAML "
        "weighs each task by what is left after the inner steps (`M^k Q M^k`), so its "
        "initialisation sits where the remaining, flat directions are shortest. FOMAML "
        "drops one factor `M^k` and Reptile weighs by `I - M^k`, the progress the inner "
        "steps make, which puts them between the two. In the pictures the blue task "
        "(left) is steep, so every method reaches it in a few steps; the orange task "
        "(right) is flat, so a few steps barely move and the distance left is set by "
        "where the initialisation sits. The largest gap between the "
        "learned and the closed-form initialisation is "
        f"{max(r['init_error'] for r in methods.values()):.3f} (stochastic meta-batches of 20 "
        "tasks, cosine-annealed Adam).",
        "",
    ]
    return "\n".join(lines)
