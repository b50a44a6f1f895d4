"""Command line: `python -m despoof_jax.main --config=configs/default.py[:variant] --workdir=DIR`.

Overrides: `--config.train.stage2_steps=100`; a misspelt field fails (configs are locked).
`--config.mode=dq|ds|eval` runs one stage alone; the default "all" runs stage 1, stage 2 and the
evaluation, resuming whatever a killed run had finished. Multi-host: `--multihost` calls
`jax.distributed.initialize()` (arguments from the environment or the --coordinator flags).
"""
from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config (a configs/*.py file).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and reports go here.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-host, optional).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host, optional).")
flags.DEFINE_integer("process_id", None, "This process's id (multi-host, optional).")
flags.DEFINE_enum("cpu_kernels", "ynn", ["ynn", "default"],
                  "XLA:CPU convolution kernels: ynn (YNNPACK, faster here) or XLA's default; "
                  "ignored when XLA_FLAGS already chooses (see despoof_jax/xla_flags.py).")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries:
    """Drops orbax's and TFDS's INFO chatter from the log; their warnings still show."""

    def filter(self, record):
        noisy = ("orbax", "tensorflow_datasets", "etils")
        return record.levelno >= 30 or not any(n in record.pathname for n in noisy)


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from despoof_jax.xla_flags import use_cpu_kernels   # noqa: PLC0415
    use_cpu_kernels(FLAGS.cpu_kernels)   # before the backend starts
    import jax   # noqa: PLC0415 (after flags: XLA_FLAGS may be set by the launcher)
    if FLAGS.multihost:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator,
                                   num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
    from despoof_jax import train   # noqa: PLC0415
    logging.info("devices: %d (%d local), process %d of %d", jax.device_count(),
                 jax.local_device_count(), jax.process_index(), jax.process_count())
    out = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if "eval" in out and jax.process_index() == 0:
        fusion = FLAGS.config.eval.fusion
        r = out["eval"]["fusions"][fusion]["frame"]
        print(json.dumps({"protocol": FLAGS.config.data.protocol, "fusion": fusion,
                          **{k: r[k] for k in ("apcer", "bpcer", "acer", "hter", "auc")}}))
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
