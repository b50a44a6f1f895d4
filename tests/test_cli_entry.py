"""The `despoof` command: every subcommand has --help, config files load by path from anywhere,
overrides are typed and a misspelt one is an error, and the console script is declared."""
import configparser
import os
import subprocess
import sys

import pytest

from despoof_jax import cli
from despoof_jax import config as config_lib
from tests.util import CONFIGS

SUBCOMMANDS = ("train", "score", "export", "report", "medium", "benchmark", "crosscheck",
               "calibrate", "subset")


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([sub, "--help"])
    assert e.value.code == 0
    assert f"despoof {sub}" in capsys.readouterr().out


def test_console_script_is_declared():
    cfg = configparser.ConfigParser()
    cfg.read(CONFIGS.parent / "setup.cfg")
    assert "despoof = despoof_jax.cli:main" in cfg["options.entry_points"]["console_scripts"]


def test_every_config_file_loads_from_another_directory(tmp_path):
    # configs/ is not a package: each file imports only from despoof_jax, so loading it by path
    # from any working directory works (as after a non-editable install).
    code = ("import glob, sys; from despoof_jax import config as c\n"
            "for f in sorted(glob.glob(sys.argv[1] + '/*.py')):\n"
            "    cfg = c.load_file(f + (':smoke' if f.endswith('default.py') else ''))\n"
            "    assert cfg.is_locked, f\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code, str(CONFIGS)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(CONFIGS.parent)))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_overrides_are_typed_and_checked():
    c = config_lib.load_file(f"{CONFIGS}/ablation_loss.py:no_magnitude,smoke",
                             ["train.stage2_steps=5", "train.tensorboard=false",
                              "data.blur_sigma=1", "data.protocol=unseen_medium"])
    assert (c.train.stage2_steps, c.train.tensorboard, c.data.blur_sigma) == (5, False, 1.0)
    assert c.data.protocol == "unseen_medium" and c.loss.magnitude == 0.0
    with pytest.raises(KeyError, match="train.stage2_stepz"):
        config_lib.apply_override(c, "train.stage2_stepz=3")
    with pytest.raises(ValueError, match="cannot be read as int"):
        config_lib.apply_override(c, "train.stage2_steps=many")
    with pytest.raises(ValueError, match="expected true or false"):
        config_lib.apply_override(c, "train.tensorboard=maybe")


def test_train_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    assert cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                     f"--workdir={tmp_path}", "--config.train.stage1_stepz=3"]) == 2
    assert "stage1_stepz" in capsys.readouterr().err
    assert cli.main(["--cpu-kernels=default", "train", "--config=nowhere.py",
                     f"--workdir={tmp_path}"]) == 2
    assert "nowhere.py" in capsys.readouterr().err
    assert cli.main(["--cpu-kernels=default", "score", "x.png", "--model", str(tmp_path),
                     "--config.train.stage1_steps=3"]) == 2
    # A value the run refuses (here an unknown mode) exits 2 with one line, as does a multi-host
    # flag without --multihost (each process would train alone into the same workdir).
    capsys.readouterr()
    assert cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                     f"--workdir={tmp_path}/m", "--config.mode=evaluate"]) == 2
    err = capsys.readouterr().err
    assert "config.mode='evaluate'" in err and "Traceback" not in err
    assert cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                     f"--workdir={tmp_path}/p", "--num-processes=2", "--process-id=1"]) == 2
    assert "given without --multihost" in capsys.readouterr().err


def test_the_absl_launcher_refuses_process_flags_without_multihost(tmp_path):
    # `python -m despoof_jax.main`, what the launch scripts run, shares the check with `despoof
    # train` (commands.join_processes); here it runs in a process of its own, as launched.
    root = CONFIGS.parent
    proc = subprocess.run(
        [sys.executable, "-m", "despoof_jax.main", f"--config={CONFIGS}/default.py:smoke",
         f"--workdir={tmp_path}/w", "--process_id=1", "--cpu_kernels=default"],
        cwd=root, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--process_id given without --multihost" in proc.stderr
    assert not (tmp_path / "w").exists()
