"""GET /v1/adaptations/{id}/model?format=onnx: the adapted model for ONNX runtimes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import torch
from apihelpers import HEADERS, KEY_B, SCHEME, pair_files, wait_status
from fastapi.testclient import TestClient

from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor


def test_adapted_model_downloads_as_onnx_that_predicts_like_the_service(
    client: TestClient, tmp_path
) -> None:
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny", "steps": "2"},
                    files=pair_files(2))  # fmt: skip
    assert r.status_code == 202, r.text
    aid = r.json()["id"]
    assert wait_status(client, aid)["status"] == "done"

    got = client.get(f"/v1/adaptations/{aid}/model?format=onnx", headers=HEADERS)
    assert got.status_code == 200, got.text
    model = onnx.load_from_string(got.content)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model_type"] == '"Segmentor"'
    assert list(json.loads(meta["class_names"]).values()) == list(SCHEME.names)

    bundle_bytes = client.get(f"/v1/adaptations/{aid}/model?format=bundle", headers=HEADERS)
    assert bundle_bytes.status_code == 200
    (tmp_path / "a.bundle").write_bytes(bundle_bytes.content)
    bundle = ModelBundle.load(tmp_path / "a.bundle")
    assert bundle.kind == "adapted"

    # the ONNX graph (fed as Deepness feeds it: raw / 255, standardised with the metadata's
    # standardization_mean / _std; probabilities out) equals the adapted torch model
    tile = int(json.loads(meta["tile_size"]))
    raw = torch.rand(1, bundle.num_bands, tile, tile) * 300
    mean, std = (np.array(json.loads(meta[f"standardization_{k}"]), np.float32).reshape(1, -1, 1, 1)
                 for k in ("mean", "std"))  # fmt: skip
    sess = ort.InferenceSession(got.content, providers=["CPUExecutionProvider"])
    probs = sess.run(None, {sess.get_inputs()[0].name: (raw.numpy() / 255 - mean) / std})[0]
    ref = Predictor.from_bundle(bundle).probabilities(raw).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-4)

    # a second download reuses the export; other keys and unknown formats are refused
    again = client.get(f"/v1/adaptations/{aid}/model", headers=HEADERS)
    assert again.status_code == 200 and again.content == got.content
    other = client.get(f"/v1/adaptations/{aid}/model", headers={"X-API-Key": KEY_B})
    assert other.status_code == 404
    bad = client.get(f"/v1/adaptations/{aid}/model?format=pt", headers=HEADERS)
    assert bad.status_code == 422
