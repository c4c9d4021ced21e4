import pytest
import torch
from torch import nn

from landcover.meta.protonet import ProtoNet, class_prototypes, prototype_logits
from landcover.models.conv4 import Conv4
from landcover.tasks.task import Task


def test_logits_are_negative_squared_distances_to_class_means():
    emb = torch.randn(9, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    protos, present = class_prototypes(emb, y)
    assert present.all()
    for k in range(3):
        torch.testing.assert_close(protos[k], emb[y == k].mean(0))
    q = torch.randn(4, 6, dtype=torch.float64)
    expected = -torch.cdist(q, protos).pow(2)
    torch.testing.assert_close(prototype_logits(q, protos), expected)


def test_learner_end_to_end_matches_manual_computation():
    enc = nn.Linear(5, 4).double()
    learner = ProtoNet(enc)
    sx, sy = torch.randn(6, 5, dtype=torch.float64), torch.tensor([1, 0, 1, 0, 2, 2])
    qx = torch.randn(3, 5, dtype=torch.float64)
    state = learner.adapt(sx, sy)
    e = enc(sx).detach()
    means = torch.stack([e[sy == k].mean(0) for k in range(3)])
    torch.testing.assert_close(learner.predict(state, qx), -torch.cdist(enc(qx), means).pow(2))


def test_masked_average_pooling_ignores_255_and_scores_every_pixel():
    emb = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    masks = torch.randint(0, 2, (2, 4, 4))
    masks[0, 0, 0] = 255
    masks[1, 3, :] = 255
    protos, present = class_prototypes(emb, masks, num_classes=3)
    pix = emb.permute(0, 2, 3, 1).reshape(-1, 3)
    lab = masks.reshape(-1)
    for k in range(2):
        torch.testing.assert_close(protos[k], pix[lab == k].mean(0))
    assert present.tolist() == [True, True, False]
    logits = prototype_logits(emb, protos, present)
    assert logits.shape == (2, 3, 4, 4)
    d2 = -((emb[1, :, 2, 1] - protos[1]) ** 2).sum()
    torch.testing.assert_close(logits[1, 1, 2, 1], d2)
    assert (logits.argmax(1) != 2).all()  # an absent class is never predicted


def test_masked_pooling_resizes_coarse_embeddings_to_mask():
    emb = torch.ones(1, 2, 2, 2)
    protos, _ = class_prototypes(emb, torch.zeros(1, 8, 8, dtype=torch.long))
    torch.testing.assert_close(protos, torch.ones(1, 2))


def test_segmentation_task_loss_ignores_unlabelled_pixels():
    """Unlabelled (255) pixels change neither the prototypes nor the query loss.

    A per-pixel (1x1) encoder makes each pixel's embedding depend on that pixel alone, so
    rewriting the inputs of unlabelled pixels, support or query, must leave the loss and
    its gradient exactly as they were, while rewriting a labelled pixel must not.
    """
    torch.manual_seed(0)
    enc = nn.Conv2d(3, 4, 1).double()
    learner = ProtoNet(enc, num_classes=3)
    sx, qx = torch.randn(2, 3, 8, 8).double(), torch.randn(1, 3, 8, 8).double()
    sy = torch.randint(0, 3, (2, 8, 8))
    sy[0, :3] = 255
    qy = torch.full((1, 8, 8), 255)
    qy[0, :4] = torch.randint(0, 3, (4, 8))

    def loss_and_grad(sx, qx, qy):
        enc.zero_grad()
        res = learner.task_loss(Task(sx, sy, qx, qy))
        res.loss.backward()
        return float(res.loss.detach()), enc.weight.grad.clone()

    base, grad = loss_and_grad(sx, qx, qy)
    sx2, qx2 = sx.clone(), qx.clone()
    sx2[0, :, :3] = 100 * torch.randn(3, 3, 8).double()  # unlabelled support pixels
    qx2[0, :, 4:] = -50 + torch.randn(3, 4, 8).double()  # unlabelled query pixels
    changed, grad2 = loss_and_grad(sx2, qx2, qy)
    assert changed == pytest.approx(base, rel=1e-12)
    torch.testing.assert_close(grad2, grad, rtol=1e-10, atol=1e-12)
    # the loss is the mean over labelled query pixels only: relabelling more pixels as 255
    # must equal dropping them from the mean
    qy3 = qy.clone()
    qy3[0, 3] = 255
    dropped, _ = loss_and_grad(sx, qx, qy3)
    state = learner.adapt(sx, sy)
    logits = learner.predict(state, qx).detach()
    manual = nn.functional.cross_entropy(logits[0, :, :3].reshape(3, -1).T, qy[0, :3].reshape(-1))
    assert dropped == pytest.approx(float(manual), rel=1e-10)
    # control: changing a labelled pixel does change the loss
    sx4 = sx.clone()
    sx4[1, :, 5, 5] += 5.0
    assert loss_and_grad(sx4, qx, qy)[0] != pytest.approx(base, rel=1e-6)


def test_bad_shapes_and_labels_are_clear_errors():
    with pytest.raises(ValueError, match="labels"):
        class_prototypes(torch.randn(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        class_prototypes(torch.randn(2, 2), torch.tensor([0, 5]), num_classes=2)


def test_protonet_learns_on_conv4():
    torch.manual_seed(0)
    learner = ProtoNet(Conv4(num_classes=0, hidden=8))
    opt = torch.optim.Adam(learner.parameters(), 1e-2)
    centers = torch.randn(3, 1, 16, 16)

    def task():
        y = torch.arange(3).repeat(4)
        x = centers[y] + 0.3 * torch.randn(12, 1, 16, 16)
        return Task(x[:6], y[:6], x[6:], y[6:])

    first = learner.task_loss(task()).query_loss
    for _ in range(15):
        opt.zero_grad()
        learner.meta_backward([task()])
        opt.step()
    assert learner.task_loss(task()).query_loss < first


@pytest.mark.parametrize("name", ["protonet", "ridge", "cnp", "mann", "snail"])
def test_registered_and_runs_on_conv4_omniglot_shapes(name):
    from landcover.meta.registry import LEARNER_NAMES, build_learner

    assert name in LEARNER_NAMES
    learner = build_learner(name, Conv4(num_classes=0, hidden=8), None)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    task = Task(torch.rand(6, 1, 28, 28), y, torch.rand(3, 1, 28, 28), torch.tensor([2, 0, 1]))
    res = learner.task_loss(task)
    res.loss.backward()
    assert torch.isfinite(res.loss)
    state = learner.adapt(task.support_x, task.support_y)
    assert learner.predict(state, task.query_x).shape == (3, 3)
