"""ONNX export: logits equal torch's, Deepness metadata round trip, the onnxruntime engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import rasterio
import torch

from landcover.cli import main as cli
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError
from landcover.inference.onnx_export import (
    OrtRunner,
    deepness_metadata,
    export_onnx,
    read_metadata,
)
from landcover.inference.predict import Predictor
from landcover.inference.predict_raster import predict_raster
from landcover.inference.testing import tiny_bundle


def deepness_feeds(raw: torch.Tensor, path: Path) -> np.ndarray:
    """Deepness' preprocessing (0.6+, models/preprocessing_utils.py): values scaled by
    1/255, then standardised with the metadata's standardization_mean / _std."""
    meta = read_metadata(path)
    mean = np.array(meta["standardization_mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.array(meta["standardization_std"], np.float32).reshape(1, -1, 1, 1)
    return (np.float32(raw.numpy() * 1.0 / 255.0) - mean) / std


@pytest.fixture(scope="module")
def per_step() -> ModelBundle:
    """MAML++ with per-step BatchNorm (the default learner), 4 bands, 3 classes."""
    return tiny_bundle(4, 3, learner="mamlpp", model_options={"width": 4, "depth": 2},
                       mean=[100.0, 200.0, 300.0, 400.0], std=[10.0, 20.0, 30.0, 40.0])  # fmt: skip


@pytest.mark.parametrize(
    ("learner", "options"),
    [("mamlpp", None), ("maml", None), ("mamlpp", {"width": 4, "depth": 2, "stride": 4})],
)
def test_onnxruntime_logits_equal_torch(learner: str, options: dict | None) -> None:
    # maml: GroupNorm small U-Net; stride 4: pooled input, upsampled logits
    bundle = tiny_bundle(4, 3, learner=learner, seed=3, model_options=options)
    predictor = Predictor.from_bundle(bundle)
    runner = OrtRunner(bundle)
    gen = torch.Generator().manual_seed(1)
    for shape in [(1, 4, 64, 64), (3, 4, 48, 80), (2, 4, 128, 96)]:
        x = torch.randn(*shape, generator=gen) * 2
        ref = predictor.logits(x).numpy()
        got = runner(x.numpy())
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
        assert got.shape == ref.shape


def test_adapted_bundle_exports_its_adapted_weights(per_step: ModelBundle, tmp_path: Path) -> None:
    from landcover.inference.adapt import adapt_bundle

    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.normal(250, 50, (4, 32, 32)).astype(np.float32))
              for _ in range(2)]  # fmt: skip
    masks = [torch.from_numpy(rng.integers(0, 3, (32, 32))) for _ in range(2)]
    adapted = adapt_bundle(per_step, images, masks, steps=2).bundle
    x = torch.rand(2, 4, 64, 64) * 500
    ours = Predictor.from_bundle(adapted).probabilities(x).numpy()
    meta_only = Predictor.from_bundle(per_step).probabilities(x).numpy()
    assert not np.allclose(ours, meta_only, atol=1e-4)  # adaptation changed the model
    path = export_onnx(adapted, tmp_path / "adapted.onnx", tile_size=64)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # before: the graph standardised the already standardised input a second time
    got = sess.run(None, {"x": deepness_feeds(x, path)})[0]
    np.testing.assert_allclose(got, ours, atol=1e-4)


def test_deepness_metadata_round_trip(per_step: ModelBundle, tmp_path: Path) -> None:
    path = export_onnx(per_step, tmp_path / "m.onnx", pixel_size_m=10.0, tile_size=128,
                       overlap_percent=20)  # fmt: skip
    meta = read_metadata(path)
    assert meta["model_type"] == "Segmentor"
    names = {int(k): v for k, v in meta["class_names"].items()}
    assert [names[i] for i in range(len(names))] == per_step.class_names
    assert meta["resolution"] == 1000.0  # cm per pixel
    assert meta["tile_size"] == meta["tiles_size"] == 128 and meta["tiles_overlap"] == 20
    np.testing.assert_allclose(np.array(meta["standardization_mean"]) * 255, per_step.mean)
    np.testing.assert_allclose(np.array(meta["standardization_std"]) * 255, per_step.std)
    ours = meta["landcover"]
    assert ours["bands"] == per_step.bands and ours["mean"] == per_step.mean
    assert [c["name"] for c in ours["classes"]] == per_step.class_names
    # Deepness needs one square input and one (N, K, H, W) output
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape[1:] == [4, 128, 128] and out.shape[1:] == [3, 128, 128]
    # a softmax's top probability is at least 1/K: no threshold may zero it before the
    # argmax (Deepness applies seg_thresh first; 0.5 turned half a real tile into class 0)
    assert meta["seg_thresh"] == 0.0
    with pytest.raises(ValueError, match="seg_thresh must be between 0 and 1/3"):
        deepness_metadata(per_step, pixel_size_m=None, tile_size=128, overlap_percent=0,
                          seg_thresh=0.5)  # fmt: skip
    # batch statistics (transductive BatchNorm): each Deepness batch would be normalised
    # by itself, so the export is refused
    with pytest.raises(BundleError, match="statistics of the batch at hand"):
        export_onnx(tiny_bundle(4, 3, model_options={"width": 4, "depth": 2, "norm": "batch"}),
                    tmp_path / "t.onnx")  # fmt: skip
    assert not (tmp_path / "t.onnx").exists()


#: Learners whose network predicts with its forward pass, as meta bundles.
FORWARD_LEARNERS = ("maml", "fomaml", "mamlpp", "reptile", "metasgd", "anil", "imaml",
                    "alphamaml", "bias_transform", "meta_lstm", "pretrain", "scratch")  # fmt: skip
CASES = [(name, "group", 4) for name in FORWARD_LEARNERS] + [
    (name, norm, stride)
    for name in ("maml", "mamlpp", "protonet", "cavia", "ridge")
    for norm in ("batch", "group", "none")
    for stride in (1, 4)
]


@pytest.mark.parametrize(("learner", "norm", "stride"), CASES)
def test_every_accepted_export_has_static_channels_and_tile(
    learner: str, norm: str, stride: int, tmp_path: Path
) -> None:
    """Deepness reads the class count and tile size from the declared output shape: a
    stride-4 U-Net (configs/folder.yaml) exported ['batch', 'Softmaxy_dim_1', ...] and its
    map processor crashed. Whatever export accepts declares (batch, K, tile, tile)."""
    options = {"width": 4, "depth": 2, "norm": norm, "stride": stride}
    bundle = tiny_bundle(3, 5, learner=learner, seed=1, model_options=options)
    try:
        path = export_onnx(bundle, tmp_path / "m.onnx", tile_size=64)
    except BundleError as err:  # refused in words, nothing written
        assert "export" in str(err) and not (tmp_path / "m.onnx").exists()
        assert learner in {"protonet", "cavia", "ridge"} or norm == "batch"
        return
    import onnx

    graph = onnx.load(str(path)).graph
    for value, channels in ((graph.input[0], 3), (graph.output[0], 5)):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert [d.dim_value for d in dims[1:]] == [channels, 64, 64]
        assert not any(d.dim_param for d in dims[1:])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    assert sess.run(None, {"x": x})[0].shape == (2, 5, 64, 64)


def test_cli_export_onnx_and_predict_with_onnxruntime(
    per_step: ModelBundle, tmp_path: Path, write_tif
) -> None:
    bundle = per_step.save(tmp_path / "m.bundle")
    code = cli(["export", str(bundle), "--onnx", "-o", str(tmp_path / "m.onnx"),
                "--pixel-size", "10"])  # fmt: skip
    assert code == 0 and read_metadata(tmp_path / "m.onnx")["resolution"] == 1000.0
    rng = np.random.default_rng(0)
    image = rng.normal(250, 60, (4, 150, 130)).astype(np.float32)
    image[:, :5, :5] = np.nan
    src = write_tif(tmp_path / "in.tif", image)
    outs = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / f"{engine}.tif"
        code = cli(["predict", str(bundle), str(src), str(out), "--engine", engine,
                    "--window", "64", "--overlap", "16", "--quiet", "--json"])  # fmt: skip
        assert code == 0
        with rasterio.open(out) as ds:
            outs[engine] = ds.read(1)
    assert (outs["torch"] == outs["onnxruntime"]).mean() > 0.999
    assert (outs["onnxruntime"][:5, :5] == 255).all()
    code = cli(["predict", str(bundle), str(src), str(tmp_path / "x.tif"), "--engine",
                "torch", "--precision", "int8", "--quiet"])  # fmt: skip
    assert code == 2  # int8 is for the onnxruntime engine


def test_int8_is_used_only_where_it_agrees(
    per_step: ModelBundle, tmp_path: Path, write_tif
) -> None:
    rng = np.random.default_rng(2)
    src = write_tif(tmp_path / "in.tif", rng.normal(250, 60, (4, 96, 96)).astype(np.float32))
    predictor = Predictor.from_bundle(per_step, engine="onnxruntime")
    note = predictor.use_int8(src)
    agree = predictor._ort.int8_agreement
    assert 0.0 <= agree <= 1.0 and f"{agree:.5f}" in note
    assert predictor.precision == ("int8" if agree >= 0.999 else "fp32")
    res = predict_raster(predictor, src, tmp_path / "o.tif", window=64, progress=False)
    assert res.info["engine"] == "onnxruntime"


def test_export_refuses_a_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli(["export", str(tmp_path / "nope.bundle"), "--onnx", "-o", str(tmp_path / "o")])
    assert code == 2
    assert "no such" in capsys.readouterr().err


def test_export_refuses_misused_inputs_in_plain_words(
    per_step: ModelBundle, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before: a bundle given without --onnx ended in an UnpicklingError traceback, and a
    negative pixel size was written as a negative Deepness resolution."""
    bundle = str(per_step.save(tmp_path / "m.bundle"))
    assert cli(["export", bundle, "-o", str(tmp_path / "again.bundle")]) == 2
    assert "already a model bundle" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk")
    assert cli(["export", str(tmp_path / "junk.pt"), "-o", str(tmp_path / "x.bundle")]) == 2
    assert "not a checkpoint of `landcover train`" in capsys.readouterr().err
    out = tmp_path / "m.onnx"
    assert cli(["export", bundle, "--onnx", "-o", str(out), "--pixel-size", "-1"]) == 2
    assert "--pixel-size must be > 0" in capsys.readouterr().err and not out.exists()
