from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from landcover.inference.bundle import (
    FORMAT_VERSION,
    ModelBundle,
    compatible,
    read_header,
)
from landcover.inference.errors import BandMismatchError, BundleError
from landcover.inference.testing import tiny_bundle
from landcover.meta.registry import build_learner
from landcover.models import build_model


def _predict(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
    learner = bundle.build_learner()
    state = bundle.adapted_state() if bundle.kind == "adapted" else None
    if state is None:
        state = learner.adapt(x, torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long), steps=0)
    with torch.no_grad():
        return learner.predict(state.detached(), bundle.normalize(x))


def test_round_trip_meta_bundle_predicts_identically(bundle: ModelBundle, tmp_path: Path) -> None:
    x = torch.rand(2, 3, 32, 32) * 255
    path = bundle.save(tmp_path / "m.bundle")
    again = ModelBundle.load(path)
    assert again.header() == json.loads(json.dumps(bundle.header()))
    assert again.state.keys() == bundle.state.keys()
    for k, v in bundle.state.items():
        assert torch.equal(again.state[k], v), k
    torch.testing.assert_close(_predict(again, x), _predict(bundle, x), rtol=0, atol=0)


def test_round_trip_adapted_bundle(bundle: ModelBundle, tmp_path: Path) -> None:
    torch.manual_seed(1)
    x = torch.rand(3, 3, 32, 32) * 255
    y = torch.randint(0, 3, (3, 32, 32))
    learner = bundle.build_learner()
    state = learner.adapt(bundle.normalize(x), y).detached()
    adapted = bundle.with_adapted(state, info={"region": "r1"})
    assert adapted.kind == "adapted" and bundle.kind == "meta"
    loaded = ModelBundle.load(adapted.save(tmp_path / "a.bundle"))
    assert loaded.kind == "adapted" and loaded.info["region"] == "r1"
    restored = loaded.adapted_state()
    assert restored.step == state.step
    assert restored.params.keys() == state.params.keys()
    with torch.no_grad():
        want = learner.predict(state, bundle.normalize(x))
        got = loaded.build_learner().predict(restored, loaded.normalize(x))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # adapted weights really differ from the meta-learned ones
    meta = dict(learner.named_parameters())
    assert any(not torch.equal(v, meta[f"model.{k}"]) for k, v in state.params.items())


def test_meta_bundle_has_no_adapted_state(bundle: ModelBundle) -> None:
    with pytest.raises(BundleError, match="adapt it first"):
        bundle.adapted_state()


def test_band_mismatch_is_clear(bundle: ModelBundle) -> None:
    bundle.check_bands(3)
    with pytest.raises(BandMismatchError, match=r"has 4 band\(s\) but the model was trained on 3"):
        bundle.check_bands(4, source="in.tif")
    with pytest.raises(BandMismatchError, match="b1, b2, b3"):
        bundle.normalize(torch.zeros(1, 5, 4, 4))


def _rewrite_header(path: Path, out: Path, **changes: object) -> Path:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8 : 8 + n])
    meta = json.loads(head["__metadata__"]["landcover"])
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    head["__metadata__"]["landcover"] = json.dumps(meta)
    blob = json.dumps(head).encode()
    blob += b" " * (-len(blob) % 8)
    out.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])
    return out


def test_incompatible_versions_are_refused(bundle: ModelBundle, tmp_path: Path) -> None:
    path = bundle.save(tmp_path / "m.bundle")
    assert read_header(_rewrite_header(path, tmp_path / "ok.bundle", info={"x": 1}))["info"]
    with pytest.raises(BundleError, match=r"written by landcover 1\.2\.0, incompatible"):
        ModelBundle.load(_rewrite_header(path, tmp_path / "v.bundle", landcover_version="1.2.0"))
    newer = _rewrite_header(path, tmp_path / "f.bundle", format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match="upgrade landcover"):
        ModelBundle.load(newer)
    with pytest.raises(BundleError, match=r"lacks \['classes'\]"):
        ModelBundle.load(_rewrite_header(path, tmp_path / "k.bundle", classes=None))
    assert compatible("0.1.3", "0.1.0") and not compatible("0.2.0", "0.1.0")
    assert compatible("1.4.0", "1.0.2") and not compatible("2.0.0", "1.9.0")


class _Boom:
    """Unpickling this object would create a file: proof that nothing is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickles_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    for i, write in enumerate([
        lambda p: p.write_bytes(pickle.dumps(_Boom(marker))),
        lambda p: torch.save({"state": _Boom(marker)}, p),  # zip container with a pickle
    ]):  # fmt: skip
        path = tmp_path / f"evil{i}.bundle"
        write(path)
        with pytest.raises(BundleError, match="never unpickles"):
            ModelBundle.load(path)
    assert not marker.exists()


def test_pickle_inside_safetensors_metadata_is_not_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "meta.bundle"
    save_file(
        {"x": torch.zeros(1)}, str(path), metadata={"landcover": pickle.dumps(_Boom(marker)).hex()}
    )
    with pytest.raises(BundleError, match="without landcover metadata"):
        ModelBundle.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content", [b"", b"hello world, not a bundle", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"]
)
def test_garbage_files_are_clear_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.bundle"
    path.write_bytes(content)
    with pytest.raises(BundleError, match="bundle"):
        ModelBundle.load(path)
    with pytest.raises(BundleError, match="no such bundle"):
        ModelBundle.load(tmp_path / "missing.bundle")


def test_save_is_atomic_and_leaves_no_temp(bundle: ModelBundle, tmp_path: Path) -> None:
    path = bundle.save(tmp_path / "sub" / "m.bundle")
    bundle.save(path)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.bundle"]


def test_from_learner_validation() -> None:
    model = build_model("small_unet", 3, 2, width=4, depth=1)
    learner = build_learner("maml", model, torch.nn.CrossEntropyLoss(), steps=1)
    classes = {"classes": [{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6]}]}
    kw = {"bands": ["r", "g", "b"], "mean": [0, 0, 0], "std": [1, 1, 1], "tile_size": 16}
    ModelBundle.from_learner(learner, classes=classes, **kw)
    with pytest.raises(BundleError, match="3 input channels but 2 band names"):
        ModelBundle.from_learner(learner, classes=classes, **{**kw, "bands": ["r", "g"]})
    with pytest.raises(BundleError, match="predicts 2 classes but the class scheme lists 1"):
        ModelBundle.from_learner(learner, classes={"classes": classes["classes"][:1]}, **kw)
    with pytest.raises(BundleError, match="stds must be > 0"):
        ModelBundle.from_learner(learner, classes=classes, **{**kw, "std": [1, 0, 1]})
    with pytest.raises(BundleError, match="JSON"):
        ModelBundle.from_learner(learner, classes=classes, info={"x": object()}, **kw)


def test_other_learners_round_trip(tmp_path: Path) -> None:
    b = tiny_bundle(4, 2, learner="fomaml", tile_size=16)
    loaded = ModelBundle.load(b.save(tmp_path / "f.bundle"))
    assert loaded.learner == b.learner and loaded.describe()["bands"] == ["b1", "b2", "b3", "b4"]


def test_truncated_bundle_is_a_clear_error(bundle: ModelBundle, tmp_path: Path) -> None:
    path = bundle.save(tmp_path / "m.bundle")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(BundleError, match="truncated or corrupt"):
        ModelBundle.load(path)


@pytest.mark.parametrize(
    ("name", "norm"),
    [("maml", "group"), ("fomaml", "group"), ("metasgd", "group"), ("anil", "group"),
     ("mamlpp", "group"), ("mamlpp", "batch"), ("maml", "batch"), ("reptile", "group"),
     ("imaml", "group"), ("protonet", "group"), ("pretrain", "batch")],
)  # fmt: skip
def test_segmentation_learners_survive_adapt_save_load(
    name: str, norm: str, tmp_path: Path
) -> None:
    """Per-step BatchNorm statistics, learned rates, prototypes: all survive the file."""
    from landcover.inference.adapt import adapt_bundle
    from landcover.inference.predict import Predictor, predict_array

    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32) * 255, torch.randint(0, 3, (2, 32, 32))
    options = {"width": 4, "depth": 2, "norm": norm}
    meta = tiny_bundle(3, 3, learner=name, model_options=options)
    meta = ModelBundle.load(meta.save(tmp_path / "m.bundle"))
    adapted = adapt_bundle(meta, x, y, steps=2).bundle
    loaded = ModelBundle.load(adapted.save(tmp_path / "a.bundle"))
    want = predict_array(Predictor.from_bundle(adapted), x[0], window=32).probabilities
    got = predict_array(Predictor.from_bundle(loaded), x[0], window=32).probabilities
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_cavia_context_channels_and_extras(tmp_path: Path) -> None:
    from landcover.inference.adapt import adapt_bundle

    model = build_model("small_unet", 3 + 4, 2, width=4, depth=1, norm="group")
    learner = build_learner("cavia", model, torch.nn.CrossEntropyLoss(), context_dim=4, steps=2)
    classes = {"classes": [{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6]}]}
    meta = ModelBundle.from_learner(learner, bands=["r", "g", "b"], mean=[0.0] * 3,
                                    std=[1.0] * 3, classes=classes, tile_size=16)  # fmt: skip
    assert meta.num_bands == 3 and meta.learner["extra_channels"] == 4
    x, y = torch.rand(2, 3, 16, 16), torch.randint(0, 2, (2, 16, 16))
    adapted = adapt_bundle(meta, x, y).bundle
    state = ModelBundle.load(adapted.save(tmp_path / "c.bundle")).adapted_state()
    assert state.extras["context"].shape == (4,)
    torch.testing.assert_close(state.extras["context"], adapted.adapted_state().extras["context"])
    with pytest.raises(BundleError, match="7 input channels but 2 band names"):
        ModelBundle.from_learner(learner, bands=["r", "g"], mean=[0.0] * 2, std=[1.0] * 2,
                                 classes=classes, tile_size=16)  # fmt: skip


def test_direct_construction_checks_band_lists(bundle: ModelBundle) -> None:
    from dataclasses import replace

    with pytest.raises(BundleError, match="3 bands but the bundle has 3 band names, 2 means"):
        replace(bundle, mean=[0.0, 0.0])
