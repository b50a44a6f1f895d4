"""The absl launcher: `python -m despoof_jax.main --config=configs/default.py[:variant] --workdir=DIR`.

What the launch scripts run on every host; `despoof train` takes the same arguments.

Overrides: `--config.train.stage2_steps=100`; a misspelt field fails (configs are locked).
`--config.mode=dq|ds|eval` runs one stage alone, `train` both stages without the evaluation;
the default "all" runs stage 1, stage 2 and the evaluation, resuming whatever a killed run had
finished. Multi-host: `--multihost` calls
`jax.distributed.initialize()` (arguments from the environment or the --coordinator flags).
Exit statuses (`commands.EXIT_*`): 0 done; 2 bad config or unwritable workdir; 3 NaN/inf loss;
143 / 130 stopped by SIGTERM (or a preemption notice) / SIGINT after saving a checkpoint.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from despoof_jax.xla_flags import use_cpu_kernels

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


def main(argv):
    del argv
    use_cpu_kernels(FLAGS.cpu_kernels)   # before the backend starts
    # Importing `commands` imports JAX but starts no backend, so jax.distributed can still be
    # initialised after it.
    from despoof_jax import commands  # noqa: PLC0415 (after the XLA flags: read at start)
    status = commands.join_processes(FLAGS.multihost, FLAGS.coordinator, FLAGS.num_processes,
                                     FLAGS.process_id)
    if status != commands.EXIT_OK:
        return status
    logging.get_absl_handler().addFilter(commands.QuietLibraries())
    return commands.run_training(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    sys.exit(app.run(main))
