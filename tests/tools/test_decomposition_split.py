"""tools/decomposition_split.py: the decomposition metrics of a trained run on any split."""
import json

import pytest

from despoof_jax.tools import decomposition_split
from despoof_jax.training.workdir import Workdir


def test_test_split_reproduces_evaluation_and_dev_differs(trained_workdir, capsys, tmp_path):
    stored = json.loads(Workdir(trained_workdir).metrics_json.read_text())["decomposition"]
    test = decomposition_split.measure(trained_workdir, "test")
    assert test["attacks"]["psnr_gain_db"]["mean"] == pytest.approx(
        stored["attacks"]["psnr_gain_db"]["mean"], rel=1e-6)
    assert test["per_species"]["print1"]["n"] == stored["per_species"]["print1"]["n"]
    out = tmp_path / "dev.json"
    assert decomposition_split.main([trained_workdir, "--json", str(out)]) == 0
    dev = json.loads(out.read_text())
    assert "dev split" in capsys.readouterr().out
    # other identities, other images: not the test numbers
    assert dev["attacks"]["psnr_gain_db"]["mean"] != test["attacks"]["psnr_gain_db"]["mean"]
    assert sum(d["n"] for k, d in dev["per_species"].items() if k != "live") == \
        dev["attacks"]["psnr_gain_db"]["n"]
