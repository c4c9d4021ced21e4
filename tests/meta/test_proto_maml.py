"""Proto-MAML (``proto_init``): prototype-initialised classifier, exact against ProtoNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landcover.meta.protonet import class_prototypes, prototype_logits
from landcover.meta.registry import build_learner
from landcover.models import build_model
from tests.meta.toy import ToySeg, seg_task


def _strided_model(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return build_model("small_unet", 3, 4, width=4, depth=2, norm="none", stride=2).to(dtype)


def _small_model(classes: int = 3) -> nn.Module:
    torch.manual_seed(1)
    return build_model("small_unet", 3, classes, width=3, depth=1, norm="none").double()


def test_zero_rate_step_predicts_the_prototypical_network_decision():
    """With a zero inner rate the adapted classifier is the prototypes' own rule.

    ``2 c.e - |c|^2`` differs from ProtoNet's ``-|e - c|^2`` by ``|e|^2`` per pixel, so the
    class probabilities agree exactly (also with a strided network, whose 1x1 classifier
    runs before the bilinear upsampling).
    """
    model = _strided_model()
    task = seg_task(seed=1, n=3, size=16, classes=4, dtype=torch.float64)
    learner = build_learner(
        "mamlpp", model, nn.CrossEntropyLoss(ignore_index=255), inner_lr=0.0, steps=1,
        proto_init=True, bn="none",
    )  # fmt: skip
    state = learner.adapt(task.support_x, task.support_y)
    ours = F.log_softmax(learner.predict(state, task.query_x), dim=1)
    with torch.no_grad():
        protos, present = class_prototypes(model.embed(task.support_x), task.support_y, 4)
        theirs = F.log_softmax(prototype_logits(model.embed(task.query_x), protos), dim=1)
    assert bool(present.all())
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_zero_steps_are_the_prototype_classifier_and_no_prototypes_the_meta_model():
    """``adapt(steps=0)`` writes the prototypes and takes no step: its query output is the
    Prototypical Network's (closed form, float64); ``prototypes=False`` is the meta-model."""
    model = _strided_model()
    task = seg_task(seed=5, n=3, size=16, classes=4, dtype=torch.float64)
    learner = build_learner(
        "mamlpp", model, nn.CrossEntropyLoss(ignore_index=255), inner_lr=0.5, steps=3,
        proto_init=True, bn="none",
    )  # fmt: skip
    state = learner.adapt(task.support_x, task.support_y, steps=0)
    assert state.step == 0 and state.extras["proto_init"] is True
    ours = F.log_softmax(learner.predict(state, task.query_x), dim=1)
    with torch.no_grad():
        protos, present = class_prototypes(model.embed(task.support_x), task.support_y, 4)
        theirs = F.log_softmax(prototype_logits(model.embed(task.query_x), protos), dim=1)
    assert bool(present.all())
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    meta = learner.adapt(task.support_x, task.support_y, steps=0, prototypes=False)
    assert "proto_init" not in meta.extras
    for name, p in model.named_parameters():
        if name in meta.params:
            torch.testing.assert_close(meta.params[name], p)
    # a step from the prototypes moves away from them (the rate is not zero)
    stepped = learner.adapt(task.support_x, task.support_y, steps=1)
    assert stepped.extras["proto_init"] is True
    assert not torch.allclose(stepped.params["head.classifier.weight"], state.params[
        "head.classifier.weight"])  # fmt: skip


def test_prototypes_flag_is_inert_without_proto_init():
    model = _small_model()
    task = seg_task(seed=6, n=2, size=6, classes=3, dtype=torch.float64)
    learner = build_learner("maml", model, nn.CrossEntropyLoss(ignore_index=255), inner_lr=0.1,
                            steps=1)  # fmt: skip
    a = learner.adapt(task.support_x, task.support_y, steps=0)
    b = learner.adapt(task.support_x, task.support_y, steps=0, prototypes=False)
    assert "proto_init" not in a.extras
    torch.testing.assert_close(a.params, b.params)
    torch.testing.assert_close(a.params["head.classifier.weight"], model.head.classifier.weight)


def test_absent_classes_keep_the_meta_learned_rows_and_no_prototypes_is_the_meta_model():
    model = _small_model()
    task = seg_task(seed=2, n=2, size=6, classes=3, dtype=torch.float64)
    support_y = task.support_y.clone()
    support_y[support_y == 2] = 0  # class 2 absent from the support
    learner = build_learner(
        "maml", model, nn.CrossEntropyLoss(ignore_index=255), inner_lr=0.0, steps=1,
        proto_init=True,
    )  # fmt: skip
    state = learner.adapt(task.support_x, support_y)
    w = state.params["head.classifier.weight"].detach()
    b = state.params["head.classifier.bias"].detach()
    meta_w = model.head.classifier.weight.detach()
    torch.testing.assert_close(w[2], meta_w[2])
    torch.testing.assert_close(b[2], model.head.classifier.bias.detach()[2])
    with torch.no_grad():
        protos, _ = class_prototypes(model.embed(task.support_x), support_y, 3)
    torch.testing.assert_close(w[:2].flatten(1), 2 * protos[:2])
    torch.testing.assert_close(b[:2], -protos[:2].pow(2).sum(1))
    unadapted = learner.adapt(task.support_x, support_y, steps=0, prototypes=False)
    torch.testing.assert_close(unadapted.params["head.classifier.weight"], meta_w)
    zero = learner.adapt(task.support_x, support_y, steps=0)  # prototypes, no step
    torch.testing.assert_close(zero.params["head.classifier.weight"], w.view_as(meta_w))
    torch.testing.assert_close(zero.params["head.classifier.weight"][2], meta_w[2])


@pytest.mark.parametrize("name", ["maml", "fomaml"])
def test_meta_gradient_through_the_prototypes_matches_finite_differences(name):
    """The query loss after one step, differentiated w.r.t. a body weight (float64)."""
    model = _small_model()
    task = seg_task(seed=3, n=2, size=6, classes=3, dtype=torch.float64)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    learner = build_learner(name, model, loss_fn, inner_lr=0.05, steps=1, proto_init=True)
    learner.task_loss(task).loss.backward()
    weight = next(p for n, p in model.named_parameters() if n.startswith("body."))
    auto = weight.grad[1, 0, 1, 2].item()

    if name == "maml":

        def objective() -> float:
            return float(learner.task_loss(task, training=False).query_loss)

    else:
        # first order: the inner gradient g is a constant, the prototypes are not, so the
        # objective is the query loss at phi = proto_init(theta) - alpha * g(theta_0)
        step = {
            n: init - learner.adapt(task.support_x, task.support_y).params[n].detach()
            for n, init in _proto_init_params(model, task).items()
        }

        def objective() -> float:
            init = _proto_init_params(model, task)
            phi = {n: init[n] - step[n] for n in init}
            out = torch.func.functional_call(model, phi, (task.query_x,))
            return float(loss_fn(out, task.query_y))

    eps = 1e-6
    with torch.no_grad():
        weight[1, 0, 1, 2] += eps
    up = objective()
    with torch.no_grad():
        weight[1, 0, 1, 2] -= 2 * eps
    down = objective()
    with torch.no_grad():
        weight[1, 0, 1, 2] += eps
    assert auto == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)
    assert auto != 0.0


def _proto_init_params(model, task) -> dict[str, torch.Tensor]:
    """All parameters with the classifier set from the support prototypes (no step)."""
    with torch.no_grad():
        protos, _ = class_prototypes(model.embed(task.support_x), task.support_y, 3)
    params = {n: p.detach() for n, p in model.named_parameters()}
    params["head.classifier.weight"] = (2 * protos).reshape_as(model.head.classifier.weight)
    params["head.classifier.bias"] = -protos.pow(2).sum(1)
    return params


def test_proto_init_refuses_what_it_cannot_do():
    model, ce = ToySeg(width=3, classes=3), nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="must adapt"):
        build_learner("maml", model, ce, adapt=["body"], proto_init=True)
    with pytest.raises(ValueError, match="task_batch='loop'"):
        build_learner("maml", model, ce, task_batch="grouped", proto_init=True)
    plain = nn.Sequential(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="1x1 Conv2d 'classifier'"):
        build_learner("maml", plain, ce, proto_init=True)


def test_inner_step_differentiates_the_support_loss_with_the_classifier_held_fixed():
    """One step moves every tensor by -alpha times its own partial derivative at the
    prototype-initialised point, not by a derivative through the prototypes."""
    model = _small_model()
    task = seg_task(seed=4, n=2, size=6, classes=3, dtype=torch.float64)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    alpha = 0.1
    learner = build_learner("maml", model, loss_fn, inner_lr=alpha, steps=1, proto_init=True)
    state = learner.adapt(task.support_x, task.support_y)
    init = {n: p.clone().requires_grad_() for n, p in _proto_init_params(model, task).items()}
    out = torch.func.functional_call(model, init, (task.support_x,))
    grads = torch.autograd.grad(loss_fn(out, task.support_y), list(init.values()))
    for (n, p), g in zip(init.items(), grads):
        torch.testing.assert_close(state.params[n].detach(), p.detach() - alpha * g)


def test_imaml_refuses_proto_init_in_words() -> None:
    """iMAML's inner loop sets no prototypes: proto_init would be a silent no-op."""

    from landcover.meta.imaml import IMAML

    with pytest.raises(ValueError, match="iMAML's inner loop sets no prototypes"):
        IMAML(nn.Conv2d(3, 2, 1), proto_init=True)
