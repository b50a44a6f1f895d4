"""The report command and the Sec. 4.4 spoof-medium analysis on the shared tiny workdirs."""
import json
import os
import re

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
