"""Training-state pytrees, optimizers and their initialisation (shapes via `jax.eval_shape`).

Stage 1 trains DQ Net alone. Stage 2 trains DS Net and VQ Net; the pretrained DQ Net enters
stage 2 as a separate `FrozenNet` pytree (params + BatchNorm statistics) that is an *argument*
of the step, never a leaf of `Stage2State`, never seen by an optimizer and never checkpointed with
the stage-2 state (it lives in the stage-1 checkpoint).
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from despoof_jax.models import DQNet, DSNet, VQNet

PyTree = Any


@flax.struct.dataclass
class NetState:
    """One trainable net: its params, BatchNorm statistics and optimizer state."""

    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree

    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


@flax.struct.dataclass
class FrozenNet:
    """A net that is applied but never trained (DQ Net in stage 2; any net at inference)."""

    params: PyTree
    batch_stats: PyTree

    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


@flax.struct.dataclass
class Stage1State:
    step: jnp.ndarray
    dq: NetState


@flax.struct.dataclass
class Stage2State:
    step: jnp.ndarray
    ds: NetState
    vq: NetState


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
    """The activations' dtype, `config.model.compute_dtype` (params are float32 regardless)."""
    name = config.model.get("compute_dtype", "float32")
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"config.model.compute_dtype = {name!r}; expected 'float32' or 'bfloat16'")
    return jnp.dtype(name)


def make_models(config: ml_collections.ConfigDict, axis_name=None, dtype=None):
    """(DSNet, DQNet, VQNet) at the config's widths; `axis_name` syncs BatchNorm across devices.
    `dtype` (default `compute_dtype(config)`) is the compute dtype; parameters stay float32."""
    m = config.model
    dtype = compute_dtype(config) if dtype is None else dtype
    bn = m.bn_momentum
    return (DSNet(width=m.ds_width, axis_name=axis_name, dtype=dtype, bn_momentum=bn,
                  input_skip=bool(m.get("ds_input_skip", False))),
            DQNet(width=m.dq_width, axis_name=axis_name, dtype=dtype, bn_momentum=bn),
            VQNet(width=m.vq_width, dropout=m.vq_dropout, axis_name=axis_name, dtype=dtype,
                  bn_momentum=bn))


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam at the paper's learning rate (3e-5, Sec. 4.1) unless the config says otherwise; with
    `train.lr_decay_step` > 0, the rate is multiplied by `train.lr_decay_factor` from that update
    on (each optimizer counts its own updates: a stage's steps)."""
    adam = optax.adam(config.train.learning_rate, eps=config.train.adam_eps)
    at = int(config.train.get("lr_decay_step", 0))
    if at <= 0:
        return adam
    return step_decay(adam, at, float(config.train.lr_decay_factor))


def step_decay(adam: optax.GradientTransformation, at: int, factor: float
               ) -> optax.GradientTransformation:
    """`adam` with its updates scaled by `factor` from update `at` on: Adam's update is linear in
    the learning rate, so this is Adam at the lower rate. The state is Adam's own (its step count
    decides), so a checkpoint written without the decay resumes with it, and a run stopped at
    `at` and resumed at the lower rate equals one run with the decay."""
    def update(updates, state, params=None):
        count = optax.tree_utils.tree_get(state, "count")   # Adam's updates done so far
        new, state = adam.update(updates, state, params)
        scale = jnp.where(count >= at, jnp.float32(factor), jnp.float32(1.0))
        return jax.tree.map(lambda u: (u * scale).astype(u.dtype), new), state
    return optax.GradientTransformation(adam.init, update)


def _input_shape(config) -> tuple:
    s = config.data.image_size
    return (1, s, s, 6)


# XLA debug options of a program that runs once: what `jax_disable_most_optimizations` sets.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def init_net(model, rng, config, tx=None):
    """Variables of `model` for the config's input size; with `tx`, a NetState, else a FrozenNet.

    Jitted: run eagerly, flax's init dispatches (and compiles) every op of the forward pass and
    of the initialisers one by one, about 3x slower than compiling the whole init once
    (measured: 12 s against 4 s for both stages' nets at 32 px on the 2-core CPU). Compiled
    with XLA's optimisation passes off (`FAST_COMPILE`), whatever the process's setting: it runs
    once, so optimising it costs more than it saves (DS Net at 64 px on the 2-core CPU: 10.9 s
    to compile and run optimised against 1.7 s; the values agree to 5e-8)."""
    shape = _input_shape(config)

    def build(rng):
        variables = model.init({"params": rng}, jnp.zeros(shape, jnp.float32), train=False)
        params, stats = variables["params"], variables.get("batch_stats", {})
        return params, stats, (None if tx is None else tx.init(params))

    if isinstance(rng, jax.core.Tracer):   # under a transformation (`abstract`: eval_shape)
        params, stats, opt_state = build(rng)
    else:
        params, stats, opt_state = jax.jit(build).lower(rng).compile(FAST_COMPILE)(rng)
    if tx is None:
        return FrozenNet(params, stats)
    return NetState(params, stats, opt_state)


def init_stage1(config, rng) -> Stage1State:
    _, dq, _ = make_models(config)
    return Stage1State(jnp.zeros((), jnp.int32), init_net(dq, rng, config, make_optimizer(config)))


def init_stage2(config, rng) -> Stage2State:
    ds, _, vq = make_models(config)
    tx = make_optimizer(config)
    r_ds, r_vq = jax.random.split(rng)
    return Stage2State(jnp.zeros((), jnp.int32), init_net(ds, r_ds, config, tx),
                       init_net(vq, r_vq, config, tx))


def frozen_dq_from_stage1(state: Stage1State) -> FrozenNet:
    """The stage-2 DQ tree: stage 1's trained params and statistics, optimizer state dropped."""
    return FrozenNet(state.dq.params, state.dq.batch_stats)


def abstract(init_fn, config) -> PyTree:
    """Shapes and dtypes of `init_fn(config, rng)` without allocating anything."""
    return jax.eval_shape(lambda r: init_fn(config, r), jax.random.key(0))


def count_params(tree: PyTree) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(tree))
