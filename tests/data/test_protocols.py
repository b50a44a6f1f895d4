"""Protocols: species/device filters, leave-one-device-out folds, disjoint identities."""
import numpy as np
import pytest

from despoof_jax.data import protocols, synthetic
from despoof_jax.data.builders import synthetic_spoof as ss

CONFIG = "s64_small"
N_SPECIES = len(synthetic.SPECIES)
ALL_DEVICES = set(range(synthetic.N_CAPTURE_DEVICES))


@pytest.fixture(scope="module")
def metadata(synthetic_data_dir):
    return {split: ss.load_metadata(CONFIG, synthetic_data_dir, split) for split in ss.SPLITS}


def _values(meta, idx, key):
    return set(meta[key][idx].tolist())


def test_intra_keeps_everything(metadata):
    p = protocols.get_protocol("intra")
    for split, meta in metadata.items():
        np.testing.assert_array_equal(protocols.select_indices(meta, p, split),
                                      np.arange(len(meta["label"])))


def test_unseen_medium_species(metadata):
    p = protocols.get_protocol("unseen_medium")
    names = synthetic.SPECIES
    want = {"train": {"live", "print1", "replay1"}, "dev": {"live", "print1", "replay1"},
            "test": {"live", "print2", "replay2"}}
    for split, meta in metadata.items():
        idx = protocols.select_indices(meta, p, split)
        assert {names[s] for s in _values(meta, idx, "species")} == want[split]
        # Nothing of a kept species is lost, nothing of a dropped one slips in.
        kept = np.isin(meta["species"], [names.index(n) for n in want[split]])
        np.testing.assert_array_equal(idx, np.flatnonzero(kept))
        assert _values(meta, idx, "device") == ALL_DEVICES


def test_unseen_device_folds_hold_out_each_device_once(metadata):
    p = protocols.get_protocol("unseen_device")
    assert len(p.folds) == synthetic.N_CAPTURE_DEVICES
    held_out = []
    for fold in range(len(p.folds)):
        test = protocols.select_indices(metadata["test"], p, "test", fold)
        test_devices = _values(metadata["test"], test, "device")
        assert len(test_devices) == 1
        held_out += test_devices
        # The test device has live and every spoof species; train/dev never see it.
        assert _values(metadata["test"], test, "species") == set(range(N_SPECIES))
        for split in ("train", "dev"):
            idx = protocols.select_indices(metadata[split], p, split, fold)
            assert _values(metadata[split], idx, "device") == ALL_DEVICES - test_devices
            assert _values(metadata[split], idx, "species") == set(range(N_SPECIES))
    assert sorted(held_out) == sorted(ALL_DEVICES)


def test_unseen_medium_device_combines_both(metadata):
    p = protocols.get_protocol("unseen_medium_device")
    train = protocols.select_indices(metadata["train"], p, "train", fold=2)
    test = protocols.select_indices(metadata["test"], p, "test", fold=2)
    assert 2 not in _values(metadata["train"], train, "device")
    assert _values(metadata["test"], test, "device") == {2}
    assert _values(metadata["train"], train, "species") == {0, 1, 3}
    assert _values(metadata["test"], test, "species") == {0, 2, 4}


def test_identities_disjoint_across_selected_splits(metadata):
    for name in protocols.PROTOCOLS:
        p = protocols.get_protocol(name)
        for fold in range(len(p.folds)):
            ids = [_values(metadata[s], protocols.select_indices(metadata[s], p, s, fold),
                           "identity") for s in ss.SPLITS]
            assert all(ids), (name, fold)
            assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]), (name, fold)


def test_extra_column_filter_and_errors():
    meta = {"species": np.array([0, 1, 2, 0]), "device": np.array([0, 0, 1, 1]),
            "session": np.array([0, 1, 2, 1])}
    spec = protocols.SplitSpec(species=(0, 1), extra={"session": (1,)})
    p = protocols.Protocol("p1_like", (protocols.Fold(spec, spec, spec),))
    np.testing.assert_array_equal(protocols.select_indices(meta, p, "train"), [1, 3])
    with pytest.raises(ValueError, match="session"):
        protocols.select_indices({k: meta[k] for k in ("species", "device")}, p, "dev")
    with pytest.raises(ValueError, match="unseen_device"):
        protocols.get_protocol("oulu_p3")
    with pytest.raises(ValueError, match="fold 6"):
        protocols.select_indices(meta, protocols.get_protocol("unseen_device"), "test", fold=6)
    with pytest.raises(ValueError, match="split"):
        protocols.select_indices(meta, p, "validation")
