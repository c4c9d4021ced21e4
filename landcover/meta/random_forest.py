"""The analyst's own tool as a learner: a random forest on a multi-scale filter bank.

What a GIS analyst fits today to a few labelled areas (ilastik's pixel classification,
QGIS's Semi-Automatic Classification Plugin, Orfeo ToolBox, Earth Engine classifiers): per
pixel, a bank of Gaussian-smoothed intensities, gradient magnitudes and Hessian
eigenvalues ("texture") at scales ``sigma = 1 .. 16`` px for every band
(:func:`skimage.feature.multiscale_basic_features`, the filter bank ilastik uses), and a
random forest (Breiman 2001; :class:`sklearn.ensemble.RandomForestClassifier`) fitted to
the labelled pixels of the support tiles alone. Nothing is meta-learned: it is the bar a
few-shot model must clear on real imagery.

It implements the :class:`~landcover.meta.protocol.Learner` protocol so every benchmark and
``landcover evaluate --baselines`` score it on exactly the tasks the other methods see.
:meth:`RandomForestLearner.predict` returns log class probabilities (classes the support
lacks get ``log(0)``, clamped), so the argmax is the forest's vote.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.tasks.task import Task

#: Floor of the log-probabilities of classes the forest never votes for.
LOG_FLOOR = -30.0


def filter_bank(image: Tensor, sigma_max: float = 16.0) -> np.ndarray:
    """Per-pixel features ``(H, W, F)`` of one ``(C, H, W)`` image (module docstring)."""
    from skimage.feature import multiscale_basic_features

    arr = image.detach().to(torch.float32).cpu().numpy()
    feats = multiscale_basic_features(
        np.moveaxis(arr, 0, -1),
        intensity=True,
        edges=True,
        texture=True,
        sigma_min=1.0,
        sigma_max=float(sigma_max),
        channel_axis=-1,
    )
    return feats.astype(np.float32)


class RandomForestLearner(Learner):
    """Random forest on a multi-scale filter bank, fitted to each support set.

    Args:
        num_classes: Classes of the output (columns of the logits).
        loss_fn: Task loss (its ``ignore_index`` marks unlabeled pixels; default 255).
        trees: Trees of the forest.
        max_depth: Depth limit of each tree.
        max_pixels: Labelled support pixels sampled to fit the forest (all when fewer).
        sigma_max: Largest filter scale in pixels.
        seed: Seed of the pixel sample and the forest.
        jobs: Threads of scikit-learn (``-1``: every core).
    """

    def __init__(
        self,
        num_classes: int,
        loss_fn: nn.Module | None = None,
        *,
        trees: int = 100,
        max_depth: int = 16,
        max_pixels: int = 20_000,
        sigma_max: float = 16.0,
        seed: int = 0,
        jobs: int = -1,
    ) -> None:
        super().__init__(loss_fn if loss_fn is not None else nn.CrossEntropyLoss(ignore_index=255))
        if int(num_classes) < 1 or int(trees) < 1 or int(max_pixels) < 1:
            raise ValueError(
                f"num_classes, trees and max_pixels must be >= 1; got {num_classes}, {trees}, "
                f"{max_pixels}"
            )
        self.num_classes = int(num_classes)
        self.trees = int(trees)
        self.max_depth = int(max_depth)
        self.max_pixels = int(max_pixels)
        self.sigma_max = float(sigma_max)
        self.seed = int(seed)
        self.jobs = int(jobs)
        self.ignore_index = int(getattr(self.loss_fn, "ignore_index", 255))

    def _features(self, x: Tensor) -> np.ndarray:
        return np.stack([filter_bank(img, self.sigma_max) for img in x])

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Fit the forest to the labelled support pixels (``steps`` is ignored)."""
        from sklearn.ensemble import RandomForestClassifier

        feats = self._features(support_x)
        labels = support_y.detach().cpu().numpy()
        keep = (labels != self.ignore_index) & (labels >= 0) & (labels < self.num_classes)
        if not keep.any():
            raise ValueError("the support set has no labelled pixel to fit the forest to")
        X, y = feats[keep], labels[keep]
        rng = np.random.default_rng(self.seed)
        if len(y) > self.max_pixels:
            pick = rng.choice(len(y), self.max_pixels, replace=False)
            X, y = X[pick], y[pick]
        forest = RandomForestClassifier(
            n_estimators=self.trees,
            max_depth=self.max_depth,
            n_jobs=self.jobs,
            random_state=self.seed,
        )
        forest.fit(X, y)
        return AdaptedState(extras={"forest": forest}, step=0)

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Log class probabilities ``(N, num_classes, H, W)`` of the fitted forest."""
        forest: Any = state.extras["forest"]
        feats = self._features(x)
        n, h, w, f = feats.shape
        proba = forest.predict_proba(feats.reshape(-1, f))
        full = np.zeros((proba.shape[0], self.num_classes), dtype=np.float32)
        full[:, forest.classes_.astype(int)] = proba
        logp = np.log(np.clip(full, np.exp(LOG_FLOOR), None))
        out = torch.from_numpy(logp).reshape(n, h, w, self.num_classes).permute(0, 3, 1, 2)
        return out.contiguous().to(x.device)

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query loss of the forest fitted to the support (nothing to meta-learn: no graph)."""
        state = self.adapt(task.support_x, task.support_y)
        out = self.predict(state, task.query_x)
        loss = self.loss_fn(out, task.query_y.to(out.device))
        return TaskResult(loss.detach(), float(loss), {})
