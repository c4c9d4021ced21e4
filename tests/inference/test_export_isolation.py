"""The exporter's tracing switches are context-local: other threads' models run unchanged."""

from __future__ import annotations

import threading

import onnx
import pytest
import torch
import torch.nn.functional as F

from landcover.inference.onnx_export import onnx_bytes
from landcover.inference.testing import tiny_bundle
from landcover.meta.functional import call, call_with, named_buffers, named_params
from landcover.models import build_model
from landcover.models.upsample import constant_scale_upsampling, upsample_to


@pytest.mark.parametrize("size", [(16, 24), (17, 24), (32, 48)])
def test_constant_scale_upsampling_gives_the_same_numbers(size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    with constant_scale_upsampling():
        got = upsample_to(x, size)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(upsample_to(x, size), ref, rtol=0, atol=0)


def test_call_with_applies_to_its_own_thread_only() -> None:
    model = build_model("small_unet", 3, 2, width=4, depth=1, norm="none")
    x = torch.randn(1, 3, 8, 8)
    params, buffers = named_params(model), named_buffers(model)
    inside = threading.Event()
    done = threading.Event()
    seen: list[str] = []

    def fake(module: object, p: object, b: object, args: object) -> torch.Tensor:
        seen.append(threading.current_thread().name)
        return torch.zeros(1)

    def exporter() -> None:
        with call_with(fake):
            assert call(model, params, buffers, x).shape == (1,)
            inside.set()
            done.wait(10)

    t = threading.Thread(target=exporter, name="exporter")
    t.start()
    assert inside.wait(10)
    try:
        out = call(model, params, buffers, x)  # this thread: the real functional call
    finally:
        done.set()
        t.join(10)
    torch.testing.assert_close(out, model(x))
    assert seen == ["exporter"]
    assert call(model, params, buffers, x).shape == (1, 2, 8, 8)


def _resize_nodes(data: bytes) -> list[onnx.NodeProto]:
    graph = onnx.load_from_string(data).graph
    return [n for n in graph.node if n.op_type in ("Resize", "Upsample")]


def test_export_traces_decoder_upsamplings_as_constant_scales() -> None:
    """Every 2x decoder upsampling is a Resize with constant scales and no sizes input."""
    bundle = tiny_bundle(3, 2, learner="mamlpp", model_options={"width": 4, "depth": 2})
    nodes = _resize_nodes(onnx_bytes(bundle, window=32))
    assert len(nodes) == 2  # depth 2: two decoder upsamplings
    for node in nodes:
        # Resize(X, roi, scales, sizes): a constant-scale resize leaves ``sizes`` empty
        assert len(node.input) < 4 or node.input[3] == "", node
