"""MAML and first-order MAML, the engine every gradient-based learner derives from.

Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks": the meta-parameters ``theta`` are the network's initial weights; a task adapts
them by ``steps`` gradient steps on its support loss, ``phi = theta - alpha grad L_s``,
and the meta-objective is the query loss at ``phi``, differentiated through the inner
loop (second order) or, with ``first_order=True``, treating ``d phi / d theta`` as the
identity (FOMAML, same paper section 5.2).

Everything runs through :func:`torch.func.functional_call` with explicit dicts; the
module is never mutated. Subclasses change one hook each: the inner rate (Meta-SGD,
LSLR), the set of fast tensors (ANIL, CAVIA), the per-step loss weights and derivative
order (MAML++), or the whole meta-objective (Reptile, iMAML, baselines).

Options shared by the family:

* ``adapt``: parameter names / dotted prefixes / globs adapted in the inner loop
  (default all). Others stay at their meta value inside the loop and are meta-learned.
* ``bn``: BatchNorm policy (see :mod:`landcover.meta.batchnorm`).
* ``body_once``: when only ``head.*`` parameters adapt and the model has ``body`` and
  ``head`` submodules with ``forward(x) == head(body(x))``, compute ``body(x)`` once per
  task and run only the head in the inner loop (``"auto"``: whenever possible).
* embed once: when only the final 1x1 classifier (``head.classifier.*``) adapts, the
  per-pixel embedding ``head.decoder(body(x))`` is computed once per task (with the
  meta-parameters, so the meta-gradient still reaches the decoder) and the inner loop runs
  only the classifier and the upsampling: ANIL's "almost no inner loop" (Raghu et al.
  2020) at the cost of one forward. It follows ``body_once`` (same conditions, and the
  ``"loop"`` task batching without ``proto_init``).
* ``proto_init``: Proto-MAML (Triantafillou et al. 2020, "Meta-Dataset", section 3.2): before
  the inner loop, the rows of the final 1x1 classifier (``head.classifier``) of every class
  present in the support are set from the support's class prototypes (masked average pooling
  of the per-pixel embeddings), ``w_k = 2 c_k``, ``b_k = -||c_k||^2``, so the first step
  starts from the Prototypical Network's decision rule instead of one fixed head for every
  task; absent classes keep the meta-learned rows. The prototypes are computed from the
  meta-parameters, so the meta-gradient reaches the body through them (first order too).
  Zero inner steps still set the prototypes (the prototype classifier with no gradient step,
  Proto-MAML's honest "no adaptation step" reference); ``adapt(..., prototypes=False)``
  gives the meta-model itself, whose classifier rows are only ever trained as the rows of
  classes absent from a support (not a usable model on its own). A state whose classifier
  came from prototypes carries ``extras["proto_init"] = True``.
* ``task_batch``: how :meth:`MAML.meta_backward` runs the tasks of a meta-batch:
  ``"loop"`` (default: one task at a time, one backward per task), ``"grouped"`` (all
  tasks through one forward per inner step with per-task weights as grouped convolutions,
  every BatchNorm policy; see :mod:`landcover.meta.grouped` and
  :mod:`landcover.meta.task_batching`) or ``"vmap"`` (:func:`torch.func.vmap`, BN-free
  models). ``vmap=True`` is the older spelling of ``task_batch="vmap"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.batchnorm import BatchNormState, bn_mode, resolve_policy
from landcover.meta.functional import (
    TensorDict,
    autograd_grads,
    call,
    ensure_grad,
    func_grads,
    named_params,
    select_names,
    sub_dict,
)
from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.meta.protonet import class_prototypes
from landcover.meta.stacking import task_metrics
from landcover.meta.task_batching import TASK_BATCH_MODES, TaskBatching
from landcover.models.segmentation import SegmentationHead
from landcover.tasks.task import Task

#: The classifier tensors that ``proto_init`` sets per task.
PROTO_NAMES = ("head.classifier.weight", "head.classifier.bias")


class MAML(TaskBatching, Learner):
    """Model-Agnostic Meta-Learning (second order by default).

    Args:
        model: The network whose initial weights are meta-learned (kept as ``self.model``).
        loss_fn: ``(prediction, target) -> scalar`` (MSE, cross-entropy, ...).
        inner_lr: Inner-loop step size ``alpha``.
        steps: Inner steps used in training and by default in :meth:`adapt`.
        first_order: Drop second-order terms (FOMAML).
        adapt: Parameters adapted in the inner loop (names, dotted prefixes or globs).
        bn: BatchNorm policy: ``"auto"``, ``"none"``, ``"transductive"``, ``"per_step"``.
        body_once: ``"auto"``, ``True`` or ``False`` (see the module docstring).
        per_step_affine: With ``bn="per_step"``, also learn per-step affine parameters.
        vmap: Batch a meta-batch's tasks with :func:`torch.func.vmap` (same as
            ``task_batch="vmap"``).
        task_batch: ``"loop"``, ``"grouped"`` or ``"vmap"`` (see the module docstring).
        proto_init: Initialise the classifier from the support prototypes before the
            inner loop (Proto-MAML; see the module docstring).
    """

    #: Policy used by ``bn="auto"`` for models with BatchNorm.
    default_bn = "transductive"

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        inner_lr: float = 0.01,
        steps: int = 1,
        first_order: bool = False,
        adapt: Sequence[str] | str | None = None,
        bn: str = "auto",
        body_once: bool | str = "auto",
        per_step_affine: bool = True,
        vmap: bool = False,
        task_batch: str = "loop",
        proto_init: bool = False,
    ) -> None:
        super().__init__(loss_fn)
        if task_batch not in TASK_BATCH_MODES:
            raise ValueError(
                f"task_batch must be one of {list(TASK_BATCH_MODES)}; got {task_batch!r}"
            )
        if vmap and task_batch == "grouped":
            raise ValueError("choose one of vmap=True and task_batch='grouped', not both")
        self.task_batch = "vmap" if vmap else task_batch
        vmap = self.task_batch == "vmap"
        if int(steps) < 0:
            raise ValueError(f"steps must be >= 0; got {steps}")
        if float(inner_lr) < 0:
            raise ValueError(f"inner_lr must be >= 0; got {inner_lr}")
        self.model = model
        self.inner_lr = float(inner_lr)
        self.default_steps = int(steps)
        self.first_order = bool(first_order)
        self.vmap = bool(vmap)
        policy = resolve_policy(model, bn, self.default_bn)
        self.bn = BatchNormState(model, policy, self.default_steps, per_step_affine=per_step_affine)
        if self.vmap and policy != "none":
            raise ValueError(
                "vmap=True needs a BatchNorm-free model (in-place running statistics cannot "
                "be batched); use vmap=False or build the model with norm='group'"
            )
        names = [n for n, _ in model.named_parameters()]
        replaced = set(self.bn.replaced_params())
        self.adapt_names = [n for n in self._select(names, adapt) if n not in replaced]
        self.body_once = self._resolve_body_once(body_once)
        self.embed_once = self.body_once and self._classifier_only() and task_batch == "loop"
        if self.task_batch == "grouped":
            self._check_grouped()
        self.proto_init = bool(proto_init)
        if self.proto_init:
            self._check_proto_init()
            self.embed_once = False

    # ----------------------------------------------------------------- configuration
    def _select(self, names: list[str], adapt: Sequence[str] | str | None) -> list[str]:
        chosen = select_names(names, adapt)
        if not chosen:
            raise ValueError("the model has no parameters to adapt")
        return chosen

    def _resolve_body_once(self, option: bool | str) -> bool:
        if option not in ("auto", True, False):
            raise ValueError(f"body_once must be 'auto', true or false; got {option!r}")
        model = self.model
        split = isinstance(getattr(model, "body", None), nn.Module) and isinstance(
            getattr(model, "head", None), nn.Module
        )
        head_only = all(n.startswith("head.") for n in self.adapt_names)
        reasons = []
        if not split:
            reasons.append("the model has no 'body' and 'head' submodules")
        if not head_only:
            reasons.append("parameters outside 'head.' adapt")
        if self.bn.policy == "per_step":
            reasons.append("bn='per_step' keeps per-step statistics in the body")
        if option == "auto":
            return not reasons
        if option and reasons:
            raise ValueError(f"body_once=True is impossible: {'; '.join(reasons)}")
        return bool(option)

    def _classifier_only(self) -> bool:
        """Whether only the head's final 1x1 classifier adapts (see ``embed once``)."""
        head = getattr(self.model, "head", None)
        classifier = getattr(head, "classifier", None)
        return (
            # the head must be classifier(decoder(features)) (+ upsampling), nothing else
            isinstance(head, SegmentationHead)
            and isinstance(getattr(head, "decoder", None), nn.Module)
            and isinstance(classifier, nn.Conv2d)
            and classifier.kernel_size == (1, 1)
            and classifier.bias is not None
            and all(n.startswith("head.classifier.") for n in self.adapt_names)
        )

    def _check_proto_init(self) -> None:
        head = getattr(self.model, "head", None)
        classifier = getattr(head, "classifier", None)
        if not (
            isinstance(getattr(head, "decoder", None), nn.Module)
            and isinstance(classifier, nn.Conv2d)
            and classifier.kernel_size == (1, 1)
            and classifier.bias is not None
        ):
            raise ValueError(
                "proto_init needs a segmentation model whose head is a decoder followed by a "
                "1x1 Conv2d 'classifier' with a bias (landcover.models.build_model)"
            )
        missing = [n for n in PROTO_NAMES if n not in self.adapt_names]
        if missing:
            raise ValueError(
                f"proto_init sets {list(PROTO_NAMES)} per task, so they must adapt; "
                f"{missing} are not in adapt"
            )
        if self.task_batch != "loop":
            raise ValueError("proto_init runs tasks one at a time: use task_batch='loop'")

    def _proto_head(
        self, meta: TensorDict, fast: TensorDict, feats: Any, support_y: Tensor, training: bool
    ) -> TensorDict:
        """Fast tensors with the classifier rows of present classes set from prototypes."""
        over, buffers = self.bn.tensors(0)
        params = {**meta, **over, **fast}
        if not self.body_once:
            feats = self._call(
                self.model.body, sub_dict(params, "body."), sub_dict(buffers, "body."),
                feats, fast, training,
            )  # fmt: skip
        emb = self._call(
            self.model.head.decoder, sub_dict(params, "head.decoder."),
            sub_dict(buffers, "head.decoder."), feats, fast, training,
        )  # fmt: skip
        weight, bias = fast[PROTO_NAMES[0]], fast[PROTO_NAMES[1]]
        ignore = int(getattr(self.loss_fn, "ignore_index", 255))
        protos, present = class_prototypes(emb, support_y, weight.shape[0], ignore_index=ignore)
        keep = present.to(protos.dtype)
        w = keep[:, None] * 2 * protos + (1 - keep[:, None]) * weight.flatten(1)
        b = keep * -protos.pow(2).sum(1) + (1 - keep) * bias
        # the other fast tensors become aliases: the inner gradient is taken w.r.t. them
        # with the classifier held as its own variable, not through the prototypes
        aliases = {n: v.view_as(v) for n, v in fast.items()}
        return {**aliases, PROTO_NAMES[0]: w.reshape(weight.shape), PROTO_NAMES[1]: b}

    # ----------------------------------------------------------------- hooks
    def _rate(self, name: str, step: int) -> Tensor | float:
        """Inner step size of parameter ``name`` at inner step ``step``."""
        return self.inner_lr

    def _first_order_now(self) -> bool:
        """Whether meta-training currently drops second-order terms."""
        return self.first_order

    def _step_weights(self, steps: int) -> list[float] | None:
        """Per-step query-loss weights (multi-step loss), or ``None`` for the last step only."""
        return None

    def _init_fast(self, meta: TensorDict) -> TensorDict:
        """Initial fast tensors of a task (the adapted parameters at their meta value)."""
        return {n: meta[n] for n in self.adapt_names}

    def _to_state(self, fast: TensorDict, steps: int) -> AdaptedState:
        return AdaptedState(params=dict(fast), step=steps)

    def _from_state(self, state: AdaptedState) -> TensorDict:
        return dict(state.params)

    # ----------------------------------------------------------------- functional core
    def _encode(self, meta: TensorDict, x: Tensor, training: bool) -> Any:
        """Body features once per task in body-once mode, else the input itself."""
        if not self.body_once:
            return x
        over, buffers = self.bn.tensors(None)
        params = sub_dict({**meta, **over}, "body.")
        feats = self._call(self.model.body, params, sub_dict(buffers, "body."), x, {}, training)
        if not self.embed_once:
            return feats
        dec = sub_dict({**meta, **over}, "head.decoder.")
        emb = self._call(
            self.model.head.decoder, dec, sub_dict(buffers, "head.decoder."), feats, {}, training
        )
        return emb, feats[0].shape[-2:]

    def _forward(
        self, meta: TensorDict, fast: TensorDict, inputs: Any, step: int | None, training: bool
    ) -> Tensor:
        """Network output with fast weights; ``step=None`` is the final forward."""
        over, buffers = self.bn.tensors(step)
        params = {**meta, **over, **fast}
        module = self.model
        if self.body_once:
            module, params, buffers = (
                self.model.head,
                sub_dict(params, "head."),
                sub_dict(buffers, "head."),
            )
        if training:
            self.bn.count_update(step, self._tasks or 1)
        if self.embed_once:
            emb, size = inputs
            w, b = params["classifier.weight"], params["classifier.bias"]
            return self.model.head.to_input_size(torch.nn.functional.conv2d(emb, w, b), size)
        return self._call(module, params, buffers, inputs, fast, training)

    def _call(
        self,
        module: nn.Module,
        params: TensorDict,
        buffers: TensorDict,
        inputs: Any,
        fast: TensorDict,
        training: bool,
    ) -> Any:
        """Functional call in the BatchNorm policy's mode (task-batched when grouped)."""
        with self._task_batch_mode(fast):
            if self.bn.policy == "none":
                return call(module, params, buffers, inputs)
            with bn_mode(self.model, self.bn.training_flag(training)):
                return call(module, params, buffers, inputs)

    def _inner(
        self,
        meta: TensorDict,
        support_x: Tensor,
        support_y: Tensor,
        steps: int,
        *,
        create_graph: bool,
        training: bool,
        functional: bool = False,
        query: tuple[Any, Tensor] | None = None,
        prototypes: bool = True,
    ) -> tuple[TensorDict, list[Tensor]]:
        """Run the inner loop; return the fast tensors and intermediate query losses.

        Args:
            meta: Meta-parameters (possibly detached).
            support_x: Support inputs.
            support_y: Support targets.
            steps: Number of inner steps.
            create_graph: Differentiate through the inner gradients (second order).
            training: Learner mode for BatchNorm.
            functional: Take gradients with :func:`torch.func.grad` (under ``vmap``).
            query: ``(encoded query inputs, targets)`` to record the query loss after
                each step but the last (multi-step loss).
            prototypes: With ``proto_init``, set the support classes' classifier rows from
                their prototypes before the steps (``False``: start from the meta rows).
        """
        fast = self._batch_fast(self._init_fast(meta))
        feats = self._encode(meta, support_x, training)
        if self.proto_init and prototypes:
            fast = self._proto_head(meta, fast, feats, support_y, training)
        step_losses: list[Tensor] = []
        for i in range(steps):

            def support_loss(fp: TensorDict, i: int = i) -> Tensor:
                out = self._forward(meta, fp, feats, i, training)
                return self._losses(out, support_y).sum()

            if functional:
                grads = func_grads(support_loss, fast, create_graph=create_graph)
            else:
                fast = ensure_grad(fast)
                grads = autograd_grads(support_loss(fast), fast, create_graph=create_graph)
            fast = {n: p - self._rate(n, i) * grads[n] for n, p in fast.items()}
            if query is not None and i < steps - 1:
                out = self._forward(meta, fast, query[0], i, training)
                step_losses.append(self._losses(out, query[1]))
        return fast, step_losses

    def _fast_weights(
        self,
        meta: TensorDict,
        support_x: Tensor,
        support_y: Tensor,
        *,
        training: bool,
        steps: int | None = None,
        functional: bool = False,
    ) -> TensorDict:
        """Fast tensors after the inner loop, first order (no graph through the steps).

        Args:
            meta: Meta-parameters (usually detached).
            support_x: Support inputs.
            support_y: Support targets.
            training: Learner mode for BatchNorm.
            steps: Inner steps; default the trained number.
            functional: Take gradients with :func:`torch.func.grad` (under ``vmap``).
        """
        steps = self.default_steps if steps is None else steps
        fast, _ = self._inner(
            meta,
            support_x,
            support_y,
            steps,
            create_graph=False,
            training=training,
            functional=functional,
        )
        return fast

    def _objective(
        self, meta: TensorDict, task: Task, *, training: bool, functional: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(meta-objective, final query loss, query output)`` of one task.

        With ``task_batch="grouped"`` inside :meth:`grouped_meta_loss`, ``task`` holds the
        tasks folded on dim 0 and both losses are per-task vectors.
        """
        steps = self.default_steps
        second = training and not self._first_order_now()
        weights = self._step_weights(steps) if training and steps > 0 else None
        q_in = self._encode(meta, task.query_x, training)
        query = (q_in, task.query_y) if weights is not None else None
        fast, step_losses = self._inner(
            meta,
            task.support_x,
            task.support_y,
            steps,
            create_graph=second,
            training=training,
            functional=functional,
            query=query,
        )
        out = self._forward(meta, fast, q_in, None, training)
        q_loss = self._losses(out, task.query_y)
        if weights is None:
            return q_loss, q_loss, out
        total = weights[-1] * q_loss
        for w, loss in zip(weights[:-1], step_losses):
            total = total + w * loss
        return total, q_loss, out

    # ----------------------------------------------------------------- protocol
    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
        prototypes: bool = True,
    ) -> AdaptedState:
        """Take ``steps`` inner steps (default: the trained number) on the support set.

        More steps than trained reuse the last trained step's rate and BatchNorm entry.
        With ``proto_init`` the classifier rows of the support's classes are first set from
        their prototypes, also at ``steps=0`` (the prototype classifier alone);
        ``prototypes=False`` skips that (at 0 steps: the meta-model, no support used).
        Without ``proto_init``, ``prototypes`` has no effect.
        """
        steps = self.default_steps if steps is None else int(steps)
        if steps < 0:
            raise ValueError(f"steps must be >= 0; got {steps}")
        with torch.enable_grad():
            fast, _ = self._inner(
                named_params(self.model),
                support_x,
                support_y,
                steps,
                create_graph=create_graph,
                training=self.training,
                prototypes=prototypes,
            )
        state = self._to_state(fast, steps)
        if self.proto_init and prototypes:
            state.extras["proto_init"] = True
        return state

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Outputs for ``x`` with the adapted state (final-step BatchNorm entry)."""
        meta = named_params(self.model)
        return self._forward(
            meta, self._from_state(state), self._encode(meta, x, self.training), None, self.training
        )

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query loss after adaptation, differentiable w.r.t. the meta-parameters."""
        with torch.enable_grad():
            loss, q_loss, out = self._objective(
                named_params(self.model), task, training=training, functional=False
            )
        metrics = task_metrics(out.detach(), task.query_y, self.loss_fn)
        return TaskResult(loss if training else loss.detach(), float(q_loss.detach()), metrics)


MAML._grouped_reference = MAML  # grouped task batching checks overrides against MAML's hooks


class FOMAML(MAML):
    """First-order MAML (Finn et al. 2017, section 5.2): ``first_order=True`` by default."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module | None = None, **options: Any) -> None:
        options.setdefault("first_order", True)
        super().__init__(model, loss_fn, **options)
