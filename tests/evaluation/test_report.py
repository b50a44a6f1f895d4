"""The report command and the Sec. 4.4 spoof-medium analysis on the shared tiny workdirs."""
import json
import os
import re

import numpy as np

from despoof_jax import cli
from tests import fake_gcs


def test_report_renders_tables_curves_and_figures(smoke_workdirs, tmp_path):
    dirs = [smoke_workdirs[k] for k in ("ablation", "cnn", "depth")]
    with fake_gcs.served(tmp_path):     # the report goes to a gs:// folder
        assert cli.main(["--cpu-kernels=default", "report"] + dirs
                        + ["--out", "gs://bucket/report", "--medium"]) == 0
        written = set(fake_gcs.FakeGCS.written)
    out = tmp_path / "bucket" / "report"
    assert {str(p) for p in out.rglob("*") if p.is_file()} == written
    md = (out / "report.md").read_text()
    # Summary: one row per workdir with its method; per-workdir Table 2-style tables.
    for method in ("despoof", "binary_cnn", "depth_only"):
        assert f"| {method} |" in md
    assert md.count("**frame level**") == 3 and md.count("**video level**") == 3
    assert "APCER is the max over attack species: each workdir's `eval.apcer_per`" in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    for name in ("compare_roc_det", "ablation_roc_det", "ablation_hist_test",
                 "ablation_sample_sheet", "ablation_tsne_noise", "ablation_tsne_highpass",
                 "ablation_confusion_3", "ablation_confusion_5", "ablation_fig5",
                 "ablation_failures", "cnn_roc_det", "depth_hist_dev"):
        assert f"images/{name}.png" in images, name
    for rel in images:
        with open(out / rel, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", rel
    medium = json.load(open(os.path.join(smoke_workdirs["ablation"], "eval", "medium",
                                         "medium.json")))
    for n, k in (("3", 3), ("5", 5)):
        r = medium[f"svm_{n}"]
        assert len(r["confusion"]) == k
        assert sum(map(sum, r["confusion"])) == medium["n_videos"]   # each video once
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["grouped_by_identity"] and r["chance_uniform"] == 1 / k
        assert 1 / k <= r["chance_majority"] < 1


def test_report_of_folds_that_decided_with_different_scores(tmp_path):
    """eval.fusion = "dev_eer" over folds: the summary's "decision" row is each fold's own score,
    and the report draws each fold's curve with that score (it crashed on "decision" before)."""
    import numpy as np  # noqa: PLC0415

    from despoof_jax import config as config_lib  # noqa: PLC0415
    from despoof_jax.evaluation import evaluate, report  # noqa: PLC0415
    from despoof_jax.training.workdir import Workdir  # noqa: PLC0415
    r = np.random.RandomState(0)

    def split():
        labels = np.repeat([0, 1], 40)
        species = np.where(labels == 1, 1 + np.arange(80) % 4, 0)
        comps = {f"score_{c}": r.randn(80) + 2.0 * labels for c in ("noise", "map", "depth")}
        return dict(comps, label=labels, species=species, video=np.arange(80),
                    identity=np.arange(80) % 8)
    root, config, tables = tmp_path / "run", config_lib.base_config(), []
    for k, how in enumerate(("noise", "map")):
        wd = Workdir(root / f"fold{k}")
        wd.root.mkdir(parents=True)
        wd.write_config(config)
        dev, test = split(), split()
        table = evaluate.fusion_table(dev, test, "eer")
        table["default_fusion"] = how
        evaluate.write_tables(wd, dev, test, table)
        tables.append(table)
    config.data.fold = -1
    Workdir(root).write_config(config)
    summary = evaluate.write_fold_summary(tables, root, protocol="intra")
    assert summary["default_fusion"] == "decision"
    md = open(report.build([str(root)], tmp_path / "rep")).read()
    assert "| decision |" in md and "ROC and DET of decision" in md
    assert (tmp_path / "rep" / "images" / "run_folds_roc.png").stat().st_size > 0


def test_score_csv_reads_back_the_decided_values_bit_for_bit(tmp_path):
    """A live score a hair below the threshold stays below it once written and read back (6
    significant digits used to round 0.30599998 up to 0.306, the threshold itself, and so turn a
    live face accepted by the run into one rejected by whoever recomputed from the file)."""
    from despoof_jax.evaluation import evaluate, metrics  # noqa: PLC0415 (after the XLA flags)
    threshold = 0.306
    score = np.nextafter(np.float32(threshold), np.float32(0))   # 0.30599998
    rng = np.random.default_rng(0)
    values = np.concatenate([[score], rng.normal(size=99)]).astype(np.float32)
    table = {"score": values, "label": np.r_[1, rng.integers(0, 2, 99)],
             "small": np.float64([1e-300] * 100)}
    evaluate.write_csv(tmp_path / "s.csv", table)
    back = evaluate.read_csv(tmp_path / "s.csv")
    np.testing.assert_array_equal(back["score"], values.astype(np.float64))
    np.testing.assert_array_equal(back["small"], table["small"])
    np.testing.assert_array_equal(back["label"], table["label"])
    assert metrics.bpcer(back["score"][:1], np.int64([0]), threshold) == 0.0
