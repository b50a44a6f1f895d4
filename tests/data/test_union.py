"""A union of synthetic builds as one split (`data.builder_config="a+b"`): `datasets.ConcatSource`
and `datasets.load_split`'s concatenation, the `build` column, and the errors on mixed schemas."""
import pickle

import ml_collections
import numpy as np
import pytest

from despoof_jax.data import datasets, pipeline
from despoof_jax.data.builders import synthetic_spoof as ss
from despoof_jax.evaluation import subsets

CONFIG, SIZE = "s64_small", 64


@pytest.fixture(scope="module")
def data(synthetic_data_dir):
    return (ss.load_source(CONFIG, synthetic_data_dir, "train"),
            ss.load_metadata(CONFIG, synthetic_data_dir, "train"))


class _Short:
    """A plain list source without __getitems__ (the other read path)."""

    def __init__(self, records):
        self._records = records

    def __len__(self):
        return len(self._records)

    def __getitem__(self, i):
        return self._records[i]


def test_concat_source_reads_every_record_once_in_order(data):
    source, _ = data
    tail = _Short([{"k": n} for n in range(3)])
    union = datasets.ConcatSource([source, tail])
    n = len(source)
    assert len(union) == n + 3
    np.testing.assert_array_equal(union[n - 1]["image"], source[n - 1]["image"])
    assert union[n]["k"] == 0 and union[-1]["k"] == 2
    got = union.__getitems__([n + 2, 1, n, 0])   # across members, out of order
    assert got[0]["k"] == 2 and got[2]["k"] == 0
    np.testing.assert_array_equal(got[1]["image"], source[1]["image"])
    np.testing.assert_array_equal(got[3]["image"], source[0]["image"])
    for bad in (n + 3, -(n + 4)):
        with pytest.raises(IndexError, match="union"):
            union[bad]
    with pytest.raises(ValueError, match="at least two"):
        datasets.ConcatSource([source])


def test_union_survives_pickling_and_feeds_the_train_pipeline(data):
    source, _ = data
    union = datasets.ConcatSource([source, source])
    clone = pickle.loads(pickle.dumps(union))
    assert repr(clone) == repr(union) and "0x" not in repr(union)
    np.testing.assert_array_equal(clone[len(source) + 4]["image"], source[4]["image"])
    n = len(source)
    it = pipeline.train_iterator(union, np.arange(n - 4, n + 4), global_batch_size=8, seed=3,
                                 process_index=0, process_count=1, size=SIZE, read_threads=2,
                                 prefetch=8, shuffle=False)
    batch = next(it)   # unshuffled: the last 4 records of the first member, the first 4 again
    np.testing.assert_array_equal(batch["rgb"][3], source[n - 1]["image"])
    np.testing.assert_array_equal(batch["rgb"][4], source[0]["image"])


def _config(builder_config, data_dir):
    return ml_collections.ConfigDict({"dataset": "synthetic_spoof", "builder_config":
                                      builder_config, "data_dir": data_dir, "image_size": SIZE})


def test_load_split_joins_the_named_builds_with_a_build_column(data, synthetic_data_dir,
                                                                monkeypatch):
    source, meta = data
    # Two names for the one built set (building a second 64 px set would cost the suite ~20 s):
    # what is checked is the join, not the records.
    seen = []
    monkeypatch.setattr(datasets.synthetic_spoof, "load_source",
                        lambda name, d, split: seen.append(name) or source)
    monkeypatch.setattr(datasets.synthetic_spoof, "load_metadata", lambda name, d, split: meta)
    union, umeta = datasets.load_split(_config("a+ b", synthetic_data_dir), "train")
    assert seen == ["a", "b"]
    n = len(source)
    assert len(union) == 2 * n
    np.testing.assert_array_equal(umeta["build"], np.repeat([0, 1], n))
    for key, column in meta.items():
        np.testing.assert_array_equal(umeta[key], np.concatenate([column, column]))
    # a protocol reads the union like any split
    assert len(datasets.protocol_indices(ml_collections.ConfigDict(
        {"dataset": "synthetic_spoof", "protocol": "intra", "fold": 0, "test_dataset": ""}),
        "train", umeta)) > n


def test_a_union_of_mismatched_builds_is_refused(data, synthetic_data_dir, monkeypatch):
    source, meta = data
    monkeypatch.setattr(datasets.synthetic_spoof, "load_source", lambda name, d, split: source)
    monkeypatch.setattr(datasets.synthetic_spoof, "load_metadata",
                        lambda name, d, split: meta if name == "a" else
                        {k: v for k, v in meta.items() if k != "video"})
    with pytest.raises(ValueError, match="one metadata schema"):
        datasets.load_split(_config("a+b", synthetic_data_dir), "train")
    for bad in ("a+a", "a+", "+b"):
        with pytest.raises(ValueError, match="names each once"):
            datasets.synthetic_builds(bad)
    assert datasets.synthetic_builds("wide2_s128") == ("wide2_s128",)


def test_subset_accepts_a_union_of_known_builds_of_one_size():
    config = ml_collections.ConfigDict({"data": {
        "dataset": "synthetic_spoof", "builder_config": "wide2_s128", "image_size": 128,
        "data_dir": "", "test_dataset": ""}})
    c = subsets._model_data(config, "wide2_s128_g60+wide4_s128_g60", None)
    assert c.data.builder_config == "wide2_s128_g60+wide4_s128_g60" and c.data.image_size == 128
    with pytest.raises(ValueError, match="nope is not"):
        subsets._model_data(config, "wide2_s128+nope", None)
    with pytest.raises(ValueError, match="one size"):
        subsets._model_data(config, "wide2_s128+wide2_smoke", None)
    # the physics of a union are its members' in order
    both = subsets.physics_column(ml_collections.ConfigDict(
        {"dataset": "synthetic_spoof", "builder_config": "wide2_smoke+wide4_smoke",
         "test_dataset": ""}), "dev", "capture_scale")
    one = ss.physics_table("wide2_smoke", "dev")["capture_scale"]
    assert len(both) == 2 * len(one) and np.all(both[:len(one)] == 1.0)
    assert np.all(both[len(one):] >= 1.0) and np.any(both[len(one):] > 1.0)
