import pytest
import torch
from torch import nn

from landcover.models.conv4 import Conv4


def test_standard_backbone_shapes_and_body_head_split():
    m = Conv4(num_classes=5)
    convs = [x for x in m.body.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 4 and all(c.out_channels == 64 and c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 4
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.modules()) == 4
    x = torch.rand(3, 1, 28, 28)
    assert m.feature_dim == 64 and m.embed(x).shape == (3, 64)
    torch.testing.assert_close(m(x), m.head(m.body(x)))
    assert Conv4(3, 0, image_size=84).embed(torch.rand(2, 3, 84, 84)).shape == (2, 64 * 5 * 5)


def test_active_way_slices_the_head_without_renaming_parameters():
    m = Conv4(num_classes=20)
    x = torch.rand(2, 1, 28, 28)
    full = m(x)
    m.set_active_way(5)
    torch.testing.assert_close(m(x), full[:, :5])
    assert {n for n, _ in m.head.named_parameters()} == {"weight", "bias"}
    with pytest.raises(ValueError, match=r"0\.\.20"):
        m.set_active_way(21)


def test_anil_runs_the_body_once_on_conv4():
    from landcover.meta.registry import build_learner

    learner = build_learner("anil", Conv4(num_classes=5, hidden=8), nn.CrossEntropyLoss())
    assert learner.body_once


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="too small"):
        Conv4(image_size=8)
    with pytest.raises(ValueError, match="expects images"):
        Conv4()(torch.rand(1, 28, 28))
