"""evaluation/subsets.py (`despoof subset`): a run's decision on the test records its metadata
selects, joined from eval/scores_test.csv and the split's metadata."""
import json
import shutil

import numpy as np
import pytest

from despoof_jax import cli
from despoof_jax.data import datasets, synthetic
from despoof_jax.evaluation import evaluate, metrics, scores, subsets
from despoof_jax.serving import model as api
from despoof_jax.training.workdir import Workdir


def _decision(workdir):
    m = json.loads(Workdir(workdir).model_json.read_text())
    table = evaluate.read_csv(Workdir(workdir).scores_csv("test"))
    return table, scores.fuse(table, m["fusion_stats"], m["fusion"]), m


def test_the_whole_split_reproduces_the_evaluation(trained_workdir):
    stored = json.loads(Workdir(trained_workdir).metrics_json.read_text())
    r = subsets.run(trained_workdir)
    frame = stored["fusions"][r["fusion"]]["frame"]
    assert r["records"] == r["of"] == frame["n_bona_fide"] + frame["n_attack"]
    assert r["threshold"] == frame["threshold"]
    for k in ("apcer", "bpcer", "acer", "auc"):
        assert r[k] == pytest.approx(frame[k], abs=1e-12), k
        assert r["ci95"][k] == pytest.approx(frame["ci95"][k], abs=1e-12), k   # same draws
    assert r["apcer_per_species"] == pytest.approx(frame["apcer_per_species"])


def test_a_subset_is_the_records_its_metadata_names(trained_workdir):
    table, fused, m = _decision(trained_workdir)
    device = table["device"].astype(int)
    # A device that holds both classes, so ACER is defined, and not every record.
    d = next(v for v in np.unique(device)
             if 0 < (device == v).sum() < device.size
             and {0, 1} <= set(table["label"][device == v].astype(int)))
    r = subsets.run(trained_workdir, [f"device={d}"])
    keep = device == d
    lab, sc, t = table["label"][keep].astype(int), fused[keep], m["threshold"]
    assert r["records"] == int(keep.sum()) < r["of"]
    assert r["bpcer"] == pytest.approx(np.mean(sc[lab == 0] >= t))
    worst = max(np.mean(sc[(lab == 1) & (table["species"][keep] == s)] < t)
                for s in np.unique(table["species"][keep][lab == 1]))
    assert r["apcer"] == pytest.approx(worst)
    assert r["auc"] == pytest.approx(metrics.auc(sc, lab))
    assert r["n"]["identities"] == np.unique(table["identity"][keep]).size
    # a condition named twice with the same value is the same subset
    assert subsets.run(trained_workdir, [f"device={d}", f"device={d}"])["records"] == r["records"]


def test_by_breaks_the_subset_down(trained_workdir):
    stored = json.loads(Workdir(trained_workdir).metrics_json.read_text())
    r = subsets.run(trained_workdir, by="species")
    frame = stored["fusions"][r["fusion"]]["frame"]
    values = r["values"]
    assert values[0]["n_attack"] == 0 and values[0]["bpcer"] == pytest.approx(frame["bpcer"])
    for sid, name in enumerate(synthetic.SPECIES):
        if sid and sid in values:
            assert values[sid]["n_bona_fide"] == 0
            assert values[sid]["apcer"] == pytest.approx(frame["apcer_per_species"][name])
    assert sum(v["n_bona_fide"] + v["n_attack"] for v in values.values()) == r["records"]


@pytest.mark.parametrize("where, message", [
    (["device"], "expected COLUMN=INTEGER"),
    (["device=x"], "expected COLUMN=INTEGER"),
    (["device=0", "device=1"], "no record can match both"),
    (["photo_source=-1"], "no metadata column 'photo_source'"),
    (["device=999"], "no test record has device=999"),
    (["species=1"], "0 bona fide and"),   # one class: ACER and AUC undefined
])
def test_bad_conditions_are_refused_through_the_command_line(trained_workdir, where, message,
                                                              capsys):
    argv = ["subset", trained_workdir] + [a for w in where for a in ("--where", w)]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_command_line_prints_and_writes_json(trained_workdir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["subset", trained_workdir, "--by", "device", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "APCER %" in printed and "records" in printed
    assert json.loads(out.read_text())["by"] == "device"


def test_scores_of_another_dataset_build_are_refused(trained_workdir, tmp_path):
    wd = tmp_path / "w"
    shutil.copytree(trained_workdir, wd, ignore=shutil.ignore_patterns("checkpoints", "dq", "ds"))
    csv = Workdir(wd).scores_csv("test")
    table = evaluate.read_csv(csv)
    table["identity"] = table["identity"][::-1].copy()   # rows no longer those of their index
    evaluate.write_csv(csv, table)
    with pytest.raises(ValueError, match="another build of the dataset"):
        subsets.run(wd)
    table["index"] = table["index"] + 10_000
    evaluate.write_csv(csv, table)
    with pytest.raises(ValueError, match="another build of the dataset"):
        subsets.run(wd)


def test_apcer_per_medium_follows_the_runs_config(trained_workdir, tmp_path):
    """A run evaluated with `eval.apcer_per = "medium"` (the Oulu configs) reports APCER per attack
    type; `despoof subset` must compute the same quantity, not APCER per instrument."""
    wd = tmp_path / "w"
    shutil.copytree(trained_workdir, wd, ignore=shutil.ignore_patterns("checkpoints", "dq", "ds"))
    config = json.loads((wd / "config.json").read_text())
    config["eval"]["apcer_per"] = "medium"
    (wd / "config.json").write_text(json.dumps(config))
    table, fused, m = _decision(trained_workdir)
    lab, sp, t = table["label"].astype(int), table["species"].astype(int), m["threshold"]
    per_medium = [np.mean(fused[(lab == 1) & np.isin(sp, ids)] < t) for ids in ((1, 2), (3, 4))]
    r = subsets.run(wd)
    assert r["apcer"] == pytest.approx(max(per_medium))
    assert set(r["apcer_per_species"]) == {"print", "display"}
    per_species = subsets.run(trained_workdir)
    assert per_species["apcer"] >= r["apcer"]        # the worst instrument is at least its medium
    assert r["bpcer"] == per_species["bpcer"]


def test_a_model_scored_on_its_own_data_reproduces_the_evaluation(trained_workdir, tmp_path,
                                                                  monkeypatch):
    """`--model`: the split scored again by the model `despoof_jax.load` reads gives the figures
    of the run's stored evaluation, whole and on a subset; `--scores` keeps the scores and a
    second call reads them instead of scoring."""
    stored = subsets.run(trained_workdir)
    cache = tmp_path / "scores.csv"
    model = api.load(trained_workdir)
    r = subsets.run(model=model, scores_path=cache)
    for k in ("records", "threshold", "fusion", "apcer", "bpcer", "acer", "auc", "ci95",
              "apcer_per_species", "n"):
        assert r[k] == stored[k], k
    assert cache.exists() and json.loads((tmp_path / "scores.csv.json").read_text())["split"] \
        == "test"

    def no_scoring(*a, **k):
        raise AssertionError("scored again despite --scores")
    monkeypatch.setattr(evaluate, "score_split", no_scoring)
    table, _, _ = _decision(trained_workdir)
    d = int(np.unique(table["device"])[0])
    again = subsets.run(model=model, where=[f"device={d}"], scores_path=cache)
    assert again["acer"] == subsets.run(trained_workdir, [f"device={d}"])["acer"]
    # A model against itself: the same figures on both sides, a paired difference of exactly 0.
    same = subsets.run(model=model, scores_path=cache, versus=model,
                       versus_scores=cache)
    assert same["versus"]["acer"] == same["acer"]
    assert same["versus"]["paired"]["diff"] == 0 and same["versus"]["paired"]["ci"] == [0, 0]
    report = subsets.format_report(same)
    assert "paired ACER difference" in report and "decision score" in report
    # What the report says of its threshold: it applies to the cached raw columns standardised
    # by the model's dev statistics (`scores.fuse`), which give back its BPCER.
    raw = evaluate.read_csv(cache)
    decision = scores.fuse(raw, model.fusion_stats, model.fusion)
    live = raw["label"] == 0
    assert np.mean(decision[live] >= model.threshold) == same["bpcer"]
    # A scores file of other data (here: another split's provenance) is refused, not reused.
    info = json.loads((tmp_path / "scores.csv.json").read_text())
    (tmp_path / "scores.csv.json").write_text(json.dumps(dict(info, split="dev")))
    with pytest.raises(ValueError, match="another model or dataset"):
        subsets.run(model=model, scores_path=cache)


@pytest.mark.parametrize("argv, message", [
    (["subset"], "either an evaluated workdir or --model"),
    (["subset", "W", "--model", "M"], "either an evaluated workdir or --model"),
    (["subset", "W", "--builder-config", "wide2_s128_t60"], "go with --model"),
    (["subset", "W", "--input-policy", "tiles"], "go with --model"),
    (["subset", "--model", "/nonexistent/model"], "/nonexistent/model"),
    (["subset", "--model", "M", "--versus-scores", "x.csv"], "goes with --versus"),
    (["subset", "--model", "M", "--versus", "M2", "--by", "device"], "does not go with --by"),
    (["subset", "W", "--by", "display_pitch"], "give its bin edges"),
    (["subset", "W", "--by", "device", "--bins", "1,2"], "--bins goes with --by one of"),
    (["subset", "W", "--by", "display_pitch", "--bins", "2,1"], "increasing edges"),
    (["subset", "W", "--by", "display_pitch", "--bins", "1,x"], "numbers separated by commas"),
])
def test_model_options_are_checked_through_the_command_line(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_physics_bins_label_every_record_once():
    codes, labels = subsets._binned(np.array([0.7, 1.2, 1.9, 2.0, 4.4, np.nan]), [1.2, 2.0])
    assert [labels[c] for c in codes] == ["< 1.2", "1.2-2", "1.2-2", ">= 2", ">= 2", "none"]


def test_physics_columns_of_a_base_world_run_are_refused(trained_workdir):
    # The suite's run is on the base world, which draws no such physics: a clear error.
    with pytest.raises(ValueError, match="base-world"):
        subsets.run(trained_workdir, by="display_pitch", bins=[2.0])


def test_physics_breakdown_reads_each_record_by_its_place_in_the_split(trained_workdir,
                                                                        monkeypatch):
    # A stand-in physics column whose value is the record's index in the split: the breakdown
    # must count, per bin, exactly the kept records whose index falls in it.
    s, _, rows, threshold, _ = subsets.load(trained_workdir)
    n = int(rows["index"].max()) + 1
    monkeypatch.setattr(subsets, "physics_column",
                        lambda data, split, name: np.arange(n, dtype=np.float64))
    d = int(np.unique(rows["device"])[0])
    r = subsets.run(trained_workdir, [f"device={d}"], by="display_pitch", bins=[n / 2])
    keep = rows["device"] == d
    low = keep & (rows["index"] < n / 2)
    assert r["values"][f"< {n / 2:g}"]["n_attack"] == int((low & (s.labels == 1)).sum())
    assert r["values"][f">= {n / 2:g}"]["n_bona_fide"] == int((keep & ~low & (s.labels == 0)).sum())


class _SmallInputModel:
    """A stand-in model with a 32 px input whose raw scores are functions of the crop it gets:
    what `_score_resized` hands to `score`, and in which order, is then visible."""

    def __init__(self, config):
        self.config = config.copy_and_resolve_references()
        self.config.data.image_size = 32
        self.image_size, self.fusion, self.threshold = 32, "map", 0.0
        self.fusion_stats = {c: (0.5, 0.1) for c in scores.COMPONENTS}
        net = type("Net", (), {"params": {}, "batch_stats": {}})
        self.ds = self.dq = net()
        self.sizes = []

    def score(self, images):
        self.sizes.append(images.shape[1:])
        m = images.reshape(len(images), -1).mean(1) / 255.0
        return api.Scores(score=m, is_attack=m >= 0, threshold=0.0, fusion="map",
                          components={"map": m, "noise": 2 * m, "depth": -m})


def test_a_build_larger_than_the_models_input_is_scored_through_its_resize(trained_workdir,
                                                                            tmp_path):
    config = Workdir(trained_workdir).read_config()
    model = _SmallInputModel(config)
    cache = tmp_path / "s.csv"
    r = subsets.run(model=model, builder_config=config.data.builder_config, scores_path=cache)
    assert model.sizes and all(s == (64, 64, 3) for s in model.sizes)   # the records, unresized
    table = evaluate.read_csv(cache)
    stored, _, _ = _decision(trained_workdir)
    np.testing.assert_array_equal(table["index"], stored["index"])
    for k in evaluate.META_COLUMNS:
        np.testing.assert_array_equal(table[k], stored[k])
    # Each row's scores are the stand-in's of that very record.
    source, _ = datasets.load_split(config.data, "test")
    i = int(table["index"][-1])
    assert table["score_noise"][-1] == pytest.approx(
        2 * np.asarray(source[i]["image"]).mean() / 255.0)
    assert r["records"] == len(table["index"])
    made_by = json.loads((tmp_path / "s.csv.json").read_text())
    assert (made_by["image_size"], made_by["input_policy"]) == (64, "resize")
    # The same weights read the larger records otherwise under tiles: those scores are not
    # reused for it (they were, silently, before the policy was in the provenance).
    model.input_policy = "tiles"
    with pytest.raises(ValueError, match="another model or dataset"):
        subsets.run(model=model, builder_config=config.data.builder_config, scores_path=cache)
    del model.input_policy
    # The other way round would upsample: refused.
    model.config.data.image_size = 128
    with pytest.raises(ValueError, match="would upsample"):
        subsets.run(model=model, builder_config=config.data.builder_config)
