"""A Proto-MAML model cannot map before it is adapted (its classifier was never trained).

Adapted means: at least one inner step, or the support's prototypes written into the
classifier (``landcover adapt --steps 0``: the prototype classifier with no gradient step).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError
from landcover.inference.onnx_export import export_onnx
from landcover.inference.predict import Predictor, predict_array
from landcover.inference.testing import tiny_bundle
from landcover.meta.protocol import AdaptedState


def _proto_bundle() -> ModelBundle:
    return tiny_bundle(
        learner="mamlpp", learner_options={"steps": 1, "inner_lr": 0.1, "proto_init": True,
                                           "bn": "none"},
        model_options={"width": 4, "depth": 2, "norm": "none"},
    )  # fmt: skip


def test_meta_or_zero_step_proto_maml_bundle_is_refused_with_the_fix(tmp_path) -> None:
    bundle = _proto_bundle()
    with pytest.raises(BundleError, match=r"proto_init.*landcover adapt"):
        Predictor.from_bundle(bundle)
    kept_nothing = bundle.with_adapted(AdaptedState())  # a guard that kept 0 steps
    with pytest.raises(BundleError, match="cannot map before it is adapted"):
        Predictor.from_bundle(kept_nothing)
    # the meta-model without prototypes at 0 steps (what adapt --steps 0 kept before 0 steps
    # meant prototypes): the meta-learned classifier as fast weights, step 0
    learner = bundle.build_learner("cpu")
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    zero = learner.adapt(x, y, steps=0, prototypes=False).detached()
    assert "head.classifier.weight" in zero.params and "proto_init" not in zero.extras
    with pytest.raises(BundleError, match="proto_init"):
        Predictor.from_bundle(bundle.with_adapted(zero))
    with pytest.raises(BundleError, match="proto_init"):
        export_onnx(bundle, tmp_path / "m.onnx")


def test_adapted_proto_maml_bundle_maps() -> None:
    bundle = _proto_bundle()
    learner = bundle.build_learner("cpu")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    y = torch.randint(0, 3, (2, 32, 32), generator=g)
    state = learner.adapt(x, y)
    assert "head.classifier.weight" in state.params
    predictor = Predictor.from_bundle(bundle.with_adapted(state.detached()))
    image = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 40, 40)).astype(np.float32))
    classes = predict_array(predictor, image).classes
    assert classes.shape == (40, 40) and int(classes.min()) >= 0
    # unadapted tiny (non-Proto-MAML) bundles still map as before
    assert Predictor.from_bundle(tiny_bundle()) is not None


def test_zero_step_proto_maml_adaptation_writes_prototypes_and_maps(tmp_path) -> None:
    """``adapt_bundle(steps=0)`` (``landcover adapt --steps 0``) keeps the prototype
    classifier: the saved bundle says so, predict accepts it and maps as the learner does."""
    from landcover.inference.adapt import adapt_bundle

    bundle = _proto_bundle()
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, 32, 32, generator=g) for _ in range(2)]
    masks = [torch.randint(0, 3, (32, 32), generator=g) for _ in range(2)]
    result = adapt_bundle(bundle, images, masks, steps=0, guard=False)
    path = result.bundle.save(tmp_path / "proto0.bundle")
    loaded = ModelBundle.load(path)
    state = loaded.adapted_state()
    assert state.step == 0 and state.extras["proto_init"] is True
    learner = bundle.build_learner("cpu")
    expected = learner.adapt(torch.stack(images), torch.stack(masks), steps=0)
    torch.testing.assert_close(
        state.params["head.classifier.weight"], expected.params["head.classifier.weight"].detach()
    )
    predictor = Predictor.from_bundle(loaded)
    image = torch.from_numpy(np.random.default_rng(1).normal(size=(3, 32, 32)).astype(np.float32))
    classes = predict_array(predictor, image).classes
    with torch.no_grad():
        direct = learner.predict(expected.detached(), image[None]).argmax(1)[0]
    assert np.array_equal(np.asarray(classes), direct.numpy())
    export_onnx(loaded, tmp_path / "proto0.onnx")  # the ONNX export accepts it too


def test_predict_cli_refuses_a_proto_maml_meta_bundle_without_a_contrary_note(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal is the only message: no "predicting with the meta-learned weights" first."""
    import rasterio

    from landcover.cli import main as landcover

    path = _proto_bundle().save(tmp_path / "meta.bundle")
    image = tmp_path / "in.tif"
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 3, "dtype": "uint8"}
    with rasterio.open(image, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8))
    code = landcover(["predict", str(path), str(image), str(tmp_path / "map.tif"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot map before it is adapted" in err
    assert "predicting with the meta-learned weights" not in err
    assert not (tmp_path / "map.tif").exists()
