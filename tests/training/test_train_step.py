"""Stage-2 semantics and data parallelism of the train steps."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from despoof_jax import config as config_lib
from despoof_jax.training import losses, parallel
from despoof_jax.training import state as state_lib
from despoof_jax.training import steps as train_step
from tests.util import random_batch, tiny_config

SIZE, BATCH = 32, 8


@pytest.fixture(scope="module")
def setup():
    # vq_dropout = 0: dropout masks are per device by design (fold_in(axis_index)), so only
    # without dropout can a pmapped step equal the single-device one. adam_eps = 1e-3: Adam's
    # first step moves each weight by about lr * sign(g), so a gradient element that is zero up to
    # float round-off would flip by 2 lr between summation orders; a larger eps keeps the
    # comparison about the gradients, which is what the device layout could get wrong.
    config = tiny_config(SIZE, **{"model.vq_dropout": 0.0, "train.adam_eps": 1e-3})
    s2 = state_lib.init_stage2(config, jax.random.key(0))
    dq = state_lib.frozen_dq_from_stage1(state_lib.init_stage1(config, jax.random.key(1)))
    batches = random_batch(0, BATCH, SIZE), random_batch(1, BATCH, SIZE)
    return config, s2, dq, batches


def _tree_max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _kwargs(config):
    ds, dq, vq = state_lib.make_models(config)
    lc = config.loss
    return dict(ds_model=ds, dq_model=dq, vq_model=vq, tx=state_lib.make_optimizer(config),
                lambdas=(lc.magnitude, lc.repetitive, lc.dq, lc.vq),
                k=losses.repetitive_kernel_size(SIZE))


def test_updates_touch_only_their_own_net(setup):
    config, s2, dq, (ba, bb) = setup
    kw = _kwargs(config)
    after_vq, _ = jax.jit(functools.partial(
        train_step.vq_update, ds_model=kw["ds_model"], vq_model=kw["vq_model"], tx=kw["tx"]))(
        s2, ba, jax.random.key(2))
    assert _tree_max_diff(after_vq.ds, s2.ds) == 0.0          # DS params, stats, Adam state
    assert _tree_max_diff(after_vq.vq.params, s2.vq.params) > 0
    after_ds, _, _ = jax.jit(functools.partial(train_step.ds_update, **kw))(
        s2, dq, bb, jax.random.key(3))
    assert _tree_max_diff(after_ds.vq, s2.vq) == 0.0
    assert _tree_max_diff(after_ds.ds.params, s2.ds.params) > 0


def test_frozen_dq_is_bit_identical_and_not_in_the_state(setup):
    config, s2, dq, (ba, bb) = setup
    before = jax.tree.map(np.array, dq)
    step = jax.jit(functools.partial(train_step.bind_stage2(config), axis_name=None))
    new, metrics = step(s2, dq, ba, bb, jax.random.key(0))
    new, metrics = step(new, dq, ba, bb, jax.random.key(0))
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(dq)):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert set(vars(new)) == {"step", "ds", "vq"}
    assert int(new.step) == 2 and float(metrics["finite"]) == 1.0


def test_gradient_reaches_ds_through_dq(setup):
    config, s2, dq, (_, bb) = setup
    kw = _kwargs(config)
    del kw["tx"], kw["lambdas"]

    def j_dq(params):
        parts, _ = train_step.ds_loss_parts(params, s2, dq, bb, jax.random.key(0), **kw)
        return parts["dq"]

    grads = jax.jit(jax.grad(j_dq))(s2.ds.params)
    norm = np.sqrt(sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(grads)))
    assert norm > 0 and np.isfinite(norm)
    # The decoder produces N, which reaches J_DQ only through DQ Net: it must get gradient.
    dec = grads["decoder"]["conv2-1"]["conv"]["kernel"]
    assert float(np.abs(dec).max()) > 0


def test_pmap_over_8_devices_equals_one_device_and_shard_map(setup):
    config, s2, dq, (ba, bb) = setup
    rng = jax.random.key(0)
    fn = train_step.bind_stage2(config)
    want, want_m = jax.jit(functools.partial(fn, axis_name=None))(s2, dq, ba, bb, rng)
    results = {}
    for mode in parallel.MODES:
        dp = parallel.DataParallel(mode)
        assert dp.n_devices == 8
        step = dp.wrap(fn, batch_args=(2, 3), n_args=5)
        got, m = step(dp.from_global(s2), dp.from_global(dq), dp.shard_batch(ba),
                      dp.shard_batch(bb), rng)
        results[mode] = dp.to_host(got)
        assert _tree_max_diff(results[mode].ds.params, want.ds.params) < 1e-5
        assert _tree_max_diff(results[mode].vq.params, want.vq.params) < 1e-5
        assert _tree_max_diff(results[mode].ds.batch_stats, want.ds.batch_stats) < 1e-5
        assert abs(float(dp.to_host(m)["ds_total"]) - float(want_m["ds_total"])) < 1e-5
        # the largest per-sample noise peak of the whole batch, not of one device's samples
        assert float(dp.to_host(m)["noise_peak"]) == pytest.approx(float(want_m["noise_peak"]),
                                                                   rel=1e-5)
    # The same per-device program under pmap and jit(shard_map): XLA compiles each on its own,
    # and fusion may reorder float32 sums. Each param moves by ~lr = 1e-3 in the step; 1e-5 is
    # 1 % of that (the one-device comparisons above use the same bound).
    assert _tree_max_diff(results["pmap"], results["shard_map"]) < 1e-5


def _deltas(new, old):
    """Each net's parameter change in one step, as float64 numpy leaves."""
    return [np.asarray(a, np.float64) - np.asarray(b, np.float64)
            for net in ("ds", "vq")
            for a, b in zip(jax.tree.leaves(getattr(new, net).params),
                            jax.tree.leaves(getattr(old, net).params))]


def _rel_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) / max(
        float(np.max(np.abs(y))) for y in b)


@pytest.fixture(scope="module")
def linear_adam(setup):
    """Stage 2 with Adam's eps far above every |g|: Adam's first update is then lr * g / eps,
    linear in the gradient (with the usual eps it is ~lr * sign(g), blind to a gradient's scale),
    so one step's parameter change *is* the gradient of each net, DS and VQ (lr = eps: ~g itself).
    Returns the config, the state, the change on the whole batch and on its first image alone."""
    config, s2, dq, (ba, bb) = setup
    linear = config.copy_and_resolve_references()
    with linear.unlocked():
        linear.train.adam_eps = 1e4
        linear.train.learning_rate = 1e4
    s2 = state_lib.init_stage2(linear, jax.random.key(0))
    single = jax.jit(functools.partial(train_step.bind_stage2(linear), axis_name=None))
    whole = _deltas(single(s2, dq, ba, bb, jax.random.key(0))[0], s2)
    # The first image alone, as a batch of 8 copies of it: the same shapes, so the same program.
    first = _deltas(single(s2, dq, *(jax.tree.map(lambda x: np.repeat(x[:1], len(x), 0), b)
                                     for b in (ba, bb)), jax.random.key(0))[0], s2)
    return linear, s2, whole, first


@pytest.mark.parametrize("mode", parallel.MODES)
def test_multi_device_step_applies_the_whole_batch_gradient(setup, linear_adam, mode):
    """On 8 devices (one image each) the step must apply the gradient of the whole batch: not a
    device's own (a missing mean over devices), not 8x it (a sum, which Adam's usual eps hides)."""
    _, _, dq, (ba, bb) = setup
    linear, s2, want, first = linear_adam
    assert max(float(np.max(np.abs(d))) for d in want) > 1e-4   # a gradient to compare
    dp = parallel.DataParallel(mode)
    step = dp.wrap(train_step.bind_stage2(linear), batch_args=(2, 3), n_args=5)
    got, _ = step(dp.from_global(s2), dp.from_global(dq), dp.shard_batch(ba), dp.shard_batch(bb),
                  jax.random.key(0))
    got = _deltas(dp.to_host(got), s2)
    assert _rel_diff(got, want) < 1e-3, _rel_diff(got, want)
    # The bound also tells a device's own gradient apart: the first image alone moves the nets
    # another way (a sum over devices would be off by 7x the change itself).
    assert _rel_diff(first, want) > 0.1, _rel_diff(first, want)


@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_stage1_step_learns_depth_on_a_fixed_batch(jitter):
    """DQ pretraining fits a fixed batch, also under the smooth colour jitter of
    train.dq_colour_jitter (a new colour change every step: the loss still falls)."""
    config = tiny_config(SIZE, **{"train.learning_rate": 3e-3, "train.dq_colour_jitter": jitter})
    s1 = state_lib.init_stage1(config, jax.random.key(0))
    batch = random_batch(0, BATCH, SIZE)
    step = jax.jit(functools.partial(train_step.bind_stage1(config), axis_name=None))
    first = None
    for _ in range(15):
        s1, m = step(s1, batch, jax.random.key(0))
        first = float(m["dq_pretrain"]) if first is None else first
    assert float(m["dq_pretrain"]) < 0.7 * first
    assert int(s1.step) == 15


def test_one_batch_step_equals_the_two_batch_step_on_one_batch(setup):
    """train.vq_batch = "shared" runs DS Net's forward once for both halves: it must compute what
    the paper's two-batch step computes when both batches are the same batch (after the VQ
    update DS Net's params are unchanged, so the second forward would repeat the first)."""
    config, s2, dq, (ba, _) = setup
    shared = config.copy_and_resolve_references()
    with shared.unlocked():
        shared.train.vq_batch = "shared"
    assert train_step.stage2_batches(config) == 2 and train_step.stage2_batches(shared) == 1
    rng = jax.random.key(3)
    want, want_m = jax.jit(functools.partial(train_step.bind_stage2(config), axis_name=None))(
        s2, dq, ba, ba, rng)
    got, got_m = jax.jit(functools.partial(train_step.bind_stage2(shared), axis_name=None))(
        s2, dq, ba, rng)
    assert _tree_max_diff(got, want) < 1e-5
    assert set(got_m) == set(want_m)
    for k in want_m:
        assert abs(float(got_m[k]) - float(want_m[k])) < 1e-5, k
    # and the one-batch step is a different step when the paper's batches differ
    other, _ = jax.jit(functools.partial(train_step.bind_stage2(config), axis_name=None))(
        s2, dq, setup[3][1], ba, rng)
    assert _tree_max_diff(other.vq.params, want.vq.params) > 1e-5


def test_unknown_vq_batch_mode_is_refused(setup):
    config = setup[0].copy_and_resolve_references()
    with config.unlocked():
        config.train.vq_batch = "both"
    with pytest.raises(ValueError, match="vq_batch"):
        train_step.bind_stage2(config)


def test_noise_truth_term_supervises_the_noise_only_when_on(setup):
    """loss.noise_truth (not in the paper): with the true noise in the batch, J_t is DS Net's RGB
    noise against N* = I - live_reference; its gradient reaches the decoder; a reference equal to
    the image (N* = 0) makes J_t the RGB half of the magnitude loss on every sample."""
    config, s2, dq, (_, bb) = setup
    kw = _kwargs(config)
    del kw["tx"], kw["lambdas"]
    rng = np.random.RandomState(3)
    ref = np.clip(bb["rgb"].astype(np.int16) + rng.randint(-40, 41, bb["rgb"].shape), 0, 255)
    with_ref = dict(bb, live_reference=ref.astype(np.uint8))

    def parts_of(params, batch):
        return train_step.ds_loss_parts(params, s2, dq, batch, jax.random.key(0), **kw)[0]

    assert "t" not in parts_of(s2.ds.params, bb)
    parts = parts_of(s2.ds.params, with_ref)
    out, _ = kw["ds_model"].apply({"params": s2.ds.params, "batch_stats": s2.ds.batch_stats},
                                  train_step.model_input(bb["rgb"]), train=True,
                                  mutable=["batch_stats"])
    truth = train_step.true_noise(bb["rgb"], with_ref["live_reference"])
    want = np.mean(np.abs(np.asarray(out["noise"])[..., :3] - np.asarray(truth)[..., :3]))
    assert float(parts["t"]) == pytest.approx(want, rel=1e-5)
    assert float(parts["t"]) > 0.05   # the reference differs from the image by ~20/255
    # the runaway diagnostic beside the terms: the batch's largest per-sample peak, no gradient
    peaks = np.asarray(losses.high_frequency_peak(out["noise"], kw["k"]))
    assert float(parts["peak_max"]) == pytest.approx(float(peaks.max()), rel=1e-5)
    assert peaks.min() < 0.99 * peaks.max()   # the samples differ: a mean would not pass
    same = parts_of(s2.ds.params, dict(bb, live_reference=bb["rgb"]))
    assert float(same["t"]) == pytest.approx(
        float(np.mean(np.abs(np.asarray(out["noise"])[..., :3]))), rel=1e-5)
    grads = jax.jit(jax.grad(lambda p: parts_of(p, with_ref)["t"]))(s2.ds.params)
    assert float(np.abs(grads["conv2-8"]["kernel"]).max()) > 0
    # In the step: logged as J_t, and the total moves by lambda_t J_t.
    for lt in (0.0, 3.0):
        c = config.copy_and_resolve_references()
        c.loss.noise_truth = lt
        step = jax.jit(functools.partial(train_step.bind_stage2(c), axis_name=None))
        _, m = step(s2, dq, bb, with_ref, jax.random.key(0))
        assert float(m["J_t"]) == pytest.approx(float(parts["t"]), rel=1e-4)
        assert float(m["noise_peak"]) == pytest.approx(float(parts["peak_max"]), rel=1e-4)
        assert "J_peak_max" not in m
        lam = (1.0, c.loss.magnitude, c.loss.repetitive, c.loss.dq, c.loss.vq)
        paper = sum(w * float(m[f"J_{n}"]) for w, n in zip(lam, ("z", "m", "r", "dq", "vq")))
        assert float(m["ds_total"]) == pytest.approx(paper + lt * float(m["J_t"]), rel=1e-4)


def test_step_decay_is_adam_at_the_lower_rate_from_its_step_on():
    """`train.lr_decay_step`: Adam's state unchanged (old checkpoints resume with it), and the run
    equals Adam at the rate up to the step, then Adam at rate x factor resumed from that state."""
    import optax   # noqa: PLC0415 (lazily: only this test builds optimizers itself)
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.3)}
    grads = [jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 1)) + 0.1 * k, params) for k in range(5)]

    def run(tx_at):   # tx_at(k): the transformation of update k; one state throughout
        q, s = params, tx_at(0).init(params)
        for k, g in enumerate(grads):
            u, s = tx_at(k).update(g, s, q)
            q = optax.apply_updates(q, u)
        return q

    def close(a, b):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8), a, b)

    plain, low = optax.adam(1e-2), optax.adam(1e-3)
    decayed = state_lib.step_decay(plain, 2, 0.1)
    assert jax.tree.structure(decayed.init(params)) == jax.tree.structure(plain.init(params))
    two_phase = run(lambda k: plain if k < 2 else low)
    close(run(lambda k: decayed), two_phase)
    assert not np.allclose(two_phase["w"], run(lambda k: plain)["w"])
    # through the config: off by default (plain Adam), on with train.lr_decay_step
    c = config_lib.base_config()
    c.train.learning_rate, c.train.adam_eps = 1e-2, 1e-8
    close(run(lambda k: state_lib.make_optimizer(c)), run(lambda k: plain))
    c.train.lr_decay_step = 2
    close(run(lambda k: state_lib.make_optimizer(c)), two_phase)
