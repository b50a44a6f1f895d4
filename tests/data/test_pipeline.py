"""The grain input pipeline: batch layout, labels, per-host slices, resumption, padded eval."""
import pickle

import numpy as np
import pytest

from despoof_jax.data import pipeline
from despoof_jax.data.builders import synthetic_spoof as ss

CONFIG, SIZE = "s64_small", 64


@pytest.fixture(scope="module")
def data(synthetic_data_dir):
    source = ss.load_source(CONFIG, synthetic_data_dir, "train")
    return source, ss.load_metadata(CONFIG, synthetic_data_dir, "train")


def _train(source, indices, **kw):
    args = dict(global_batch_size=8, seed=3, process_index=0, process_count=1, size=SIZE,
                read_threads=2, prefetch=8)
    return pipeline.train_iterator(source, indices, **{**args, **kw})


def test_batch_layout_and_labels(data):
    source, meta = data
    indices = np.arange(len(source))
    batch = next(_train(source, indices, shuffle=False))
    want = {"rgb": (np.uint8, (8, 64, 64, 3)), "depth": (np.float32, (8, 8, 8, 1)),
            "map": (np.float32, (8, 8, 8, 1)), "label": (np.int32, (8,)),
            "species": (np.int32, (8,)), "device": (np.int32, (8,)),
            "identity": (np.int32, (8,)), "video": (np.int32, (8,))}
    assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
        k: (np.dtype(d), s) for k, (d, s) in want.items()}
    # Unshuffled, the first batch is records 0..7: compare with the records themselves.
    for i in range(8):
        record = source[i]
        np.testing.assert_array_equal(batch["rgb"][i], record["image"])
        block = record["depth"][:8, 8:16, 0].astype(np.float64) / 255.0
        np.testing.assert_allclose(batch["depth"][i, 0, 1, 0], block.mean(), rtol=1e-5)
        for key in ("label", "species", "device", "identity", "video"):
            assert batch[key][i] == meta[key][i]
    assert 0.0 <= batch["depth"].min() and batch["depth"].max() <= 1.0
    assert batch["depth"].max() > 0.1  # A face is there, not an empty map.
    # The 0\1 map (Eq. 6) is the label everywhere; the batch holds both classes.
    np.testing.assert_array_equal(batch["map"], np.broadcast_to(
        batch["label"][:, None, None, None].astype(np.float32), (8, 8, 8, 1)))
    assert set(batch["label"].tolist()) == {0, 1}


def test_batches_carry_the_live_reference_on_request(data):
    """loss.noise_truth's batches: `live_reference` beside `rgb`, degraded the same way; equal to
    the image on live records; a source without references is refused before any read."""
    source, _ = data
    indices = np.arange(len(source))
    plain = next(_train(source, indices, shuffle=False))
    assert "live_reference" not in plain
    blur = pipeline.Degradation(blur_sigma=1.0)
    batch = next(_train(source, indices, shuffle=False, with_reference=True, degradation=blur))
    assert batch["live_reference"].dtype == np.uint8
    for i in range(8):
        record = source[i]
        np.testing.assert_array_equal(batch["live_reference"][i],
                                      pipeline.degrade(record["live_reference"], blur))
        np.testing.assert_array_equal(batch["rgb"][i], pipeline.degrade(record["image"], blur))
        if batch["label"][i] == 0:
            np.testing.assert_array_equal(batch["live_reference"][i], batch["rgb"][i])
    assert np.any(batch["live_reference"] != batch["rgb"])   # spoofs differ from their truth

    class NoReference:
        def __len__(self):
            return len(source)

        def __getitem__(self, i):
            return {k: v for k, v in source[i].items() if k != "live_reference"}

    with pytest.raises(ValueError, match="live_reference"):
        _train(NoReference(), indices, with_reference=True)


def test_shuffled_epoch_is_a_permutation_and_seeded(data):
    source, meta = data
    indices = np.flatnonzero(meta["species"] != 2)  # 48 records, a strict subset.
    videos = lambda it: np.concatenate([b["video"] for b in it])
    first = videos(_train(source, indices, num_epochs=1))
    assert sorted(first.tolist()) == sorted(meta["video"][indices].tolist())
    assert not np.array_equal(first, meta["video"][indices])  # Actually shuffled.
    np.testing.assert_array_equal(first, videos(_train(source, indices, num_epochs=1)))
    assert not np.array_equal(first, videos(_train(source, indices, num_epochs=1, seed=4)))


def test_hosts_read_disjoint_slices_that_cover_the_set(data):
    source, meta = data
    indices = np.arange(len(source))  # 60 records; s64_small has one frame, so video is a key.
    seen = []
    for host in range(2):
        it = _train(source, indices, global_batch_size=10, process_index=host, process_count=2,
                    num_epochs=1)
        batches = list(it)
        assert len(batches) == 6 and all(b["rgb"].shape[0] == 5 for b in batches)
        got = np.concatenate([b["video"] for b in batches])
        want = meta["video"][pipeline.host_slice(indices, host, 2)]
        assert sorted(got.tolist()) == sorted(want.tolist())
        seen.append(set(got.tolist()))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(meta["video"].tolist())


def test_host_slice_drops_the_same_remainder_everywhere():
    indices = np.arange(11)
    parts = [pipeline.host_slice(indices, h, 3) for h in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert len(set(np.concatenate(parts).tolist())) == 9


def test_resume_from_saved_state_gives_the_next_batch(data):
    source, _ = data
    indices = np.arange(len(source))
    it = _train(source, indices)
    for _ in range(9):  # Past the first epoch (7 batches of 8 of 60 records).
        next(it)
    state = it.get_state()
    want = next(it)
    resumed = _train(source, indices)
    resumed.set_state(state)
    got = next(resumed)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert not np.array_equal(next(_train(source, indices))["video"], want["video"])


def test_eval_covers_every_index_once_with_padding(data):
    source, meta = data
    indices = np.flatnonzero(meta["device"] != 0)[:23]
    batches = list(pipeline.eval_batches(source, indices, batch_size=8, size=SIZE))
    assert len(batches) == 3
    assert all(b["rgb"].shape == (8, 64, 64, 3) and b["valid"].dtype == bool for b in batches)
    assert [int(b["valid"].sum()) for b in batches] == [8, 8, 7]
    index = np.concatenate([b["index"][b["valid"]] for b in batches])
    np.testing.assert_array_equal(index, indices)  # In order, each once.
    video = np.concatenate([b["video"][b["valid"]] for b in batches])
    np.testing.assert_array_equal(video, meta["video"][indices])
    assert batches[-1]["index"][-1] == -1 and not batches[-1]["rgb"][-1].any()


def test_eval_hosts_yield_equally_many_batches(data):
    source, _ = data
    indices = np.arange(21)
    per_host = [list(pipeline.eval_batches(source, indices, batch_size=4, size=SIZE,
                                           process_index=h, process_count=2)) for h in range(2)]
    assert [len(b) for b in per_host] == [3, 3]
    got = [np.concatenate([b["index"][b["valid"]] for b in bs]) for bs in per_host]
    assert sorted(np.concatenate(got).tolist()) == list(range(21))


def test_input_errors(data):
    source, _ = data
    indices = np.arange(len(source))
    with pytest.raises(ValueError, match=r"expected \(128, 128, 3\)"):
        _train(source, indices, size=128)
    with pytest.raises(ValueError, match=r"expected \(32, 32, 3\)"):
        next(pipeline.eval_batches(source, indices, batch_size=4, size=32))
    with pytest.raises(ValueError, match="multiple of process_count"):
        _train(source, indices, global_batch_size=9, process_count=2)
    with pytest.raises(ValueError, match="empty"):
        _train(source, np.arange(0))
    with pytest.raises(ValueError, match=r"\[0, 60\)"):
        _train(source, np.arange(61))


def test_source_survives_pickling_for_grain_workers(data):
    # worker_count > 0 pickles the source into each worker; TFDS re-creates the builder there.
    source, _ = data
    clone = pickle.loads(pickle.dumps(pipeline._Subset(source, np.arange(3, 9))))
    assert len(clone) == 6
    np.testing.assert_array_equal(clone[1]["image"], source[4]["image"])
    assert repr(clone) == repr(pipeline._Subset(source, np.arange(3, 9)))
