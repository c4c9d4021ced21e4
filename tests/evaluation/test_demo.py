"""`landcover demo --quick`: the README's main job end to end on a smoke-sized budget."""

import json

import pytest

from landcover.evaluation.demo import DemoSettings, main


@pytest.mark.slow
def test_quick_demo_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(["--synthetic", "--quick", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    )
    report = out / "report"
    for name in ("report.md", "metrics.json", "miou_vs_shots.png", "maps.png"):
        assert (report / name).stat().st_size > 0, name
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["summary"]) == {"MAML++", "pretrain+finetune", "scratch"}
    quick = DemoSettings.quick(out)
    for method in metrics["per_task"].values():
        for k in quick.shots:
            assert len(method[str(k)]["miou"]) == quick.tasks_per_shot
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["margins_vs_pretrain"]) == {str(k) for k in quick.shots}
    assert (out / "runs" / "mamlpp" / "checkpoints" / "last.ckpt").is_file()
    from landcover.inference.bundle import ModelBundle

    bundle = ModelBundle.load(out / "maml.bundle")
    assert bundle.learner["name"] == "mamlpp" and bundle.kind == "meta"
    printed = capsys.readouterr().out
    assert "MAML++ minus pretrain+finetune" in printed and "| MAML++ |" in printed


def test_demo_regenerates_regions_an_earlier_demo_made_with_other_knobs(tmp_path):
    from landcover.evaluation.demo import demo_data

    data = tmp_path / "data"
    (data / "region_000").mkdir(parents=True)
    (data / "synth.json").write_text(json.dumps({"config": {"regions": 6, "seed": 0}}))
    assert demo_data(tmp_path, {"regions": 6, "seed": 0}) == data
    assert (data / "region_000").is_dir()  # same knobs: reused
    assert demo_data(tmp_path, {"regions": 16, "seed": 0}) == data
    assert not data.exists()  # a quick demo's regions are not reused by a full one


@pytest.mark.parametrize("bad", [["--tasks", "1"], ["--epochs", "0"], ["--threads", "0"]])
def test_bad_demo_settings_are_refused_before_any_work(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "demo"), *bad])
    assert exc.value.code == 2 and f"{bad[0]} must be at least" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
