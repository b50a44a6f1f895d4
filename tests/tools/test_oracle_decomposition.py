"""The supervised upper bound of the decomposition (tools/oracle_decomposition.py)."""
import json

from despoof_jax.tools import oracle_decomposition
from tests.util import CONFIGS


def test_oracle_trains_on_the_true_noise_and_scores_the_test_split(synthetic_data_dir, tmp_path,
                                                                   capsys):
    rc = oracle_decomposition.main([
        f"--config={CONFIGS}/default.py:smoke", f"--workdir={tmp_path}", "--steps=3",
        f"--config.data.data_dir={synthetic_data_dir}", "--config.model.ds_width=0.25"])
    assert rc == 0
    out = json.loads((tmp_path / "oracle.json").read_text())
    assert out["steps"] == 3 and [s for s, _ in out["curve"]] == [3]
    dec = out["decomposition"]
    assert "live" in dec["per_species"] and dec["attacks"]["n"] > 0
    assert dec["attacks"]["correlation"] is not None
    assert "PSNR gain" in capsys.readouterr().out
