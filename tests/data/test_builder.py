"""The synthetic_spoof TFDS builder: counts, fields, disjoint identities, determinism."""
import itertools

import numpy as np
import pytest
from etils import epath

from despoof_jax.data import synthetic
from despoof_jax.data.builders import synthetic_spoof as ss

CONFIG = "s64_small"


@pytest.fixture(scope="module")
def data_dir(synthetic_data_dir):
    # conftest builds s64_small once per session; this module only reads it.
    return synthetic_data_dir


def _config():
    return next(c for c in ss.CONFIGS if c.name == CONFIG)


def test_counts_and_fields_follow_the_plan(data_dir):
    config = _config()
    for split in ss.SPLITS:
        source = ss.load_source(CONFIG, data_dir, split)
        meta = ss.load_metadata(CONFIG, data_dir, split)
        plan = ss.example_plan(config, split)
        assert len(source) == len(plan) == config.num_examples(split) == 60
        # Storage order is plan order; the metadata table is read from the records themselves.
        for key in ("identity", "species", "device", "video", "frame"):
            np.testing.assert_array_equal(meta[key], [getattr(e, key) for e in plan])
        np.testing.assert_array_equal(meta["label"], (meta["species"] != 0).astype(int))
        record = source[len(source) - 1]
        assert record["image"].dtype == np.uint8 and record["image"].shape == (64, 64, 3)
        assert record["depth"].dtype == np.uint8 and record["depth"].shape == (64, 64, 1)
        assert record["label"] == 1 and record["species"] == len(synthetic.SPECIES) - 1
        # Every species is seen on every device in every split (the unseen_device protocol needs it).
        pairs = set(zip(meta["species"].tolist(), meta["device"].tolist()))
        assert pairs == set(itertools.product(range(len(synthetic.SPECIES)),
                                              range(synthetic.N_CAPTURE_DEVICES)))


def test_records_match_the_generator(data_dir):
    config = _config()
    source = ss.load_source(CONFIG, data_dir, "dev")
    for i in (0, 37):
        entry = ss.example_plan(config, "dev")[i]
        want = synthetic.make_example(seed=config.seed, size=config.size,
                                      difficulty=config.difficulty, **entry._asdict())
        got = source[i]
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["live_reference"], want["live_reference"])
        np.testing.assert_array_equal(got["depth"][..., 0], want["depth"])


def test_records_carry_the_live_reference(data_dir):
    """Every record stores its ground-truth live face: uint8 [S, S, 3]; the true spoof noise
    N* = image - live_reference is zero on every live record and clearly not on spoof records."""
    source = ss.load_source(CONFIG, data_dir, "test")
    meta = ss.load_metadata(CONFIG, data_dir, "test")
    for i in range(len(source)):
        r = source[i]
        ref = r["live_reference"]
        assert ref.dtype == np.uint8 and ref.shape == (64, 64, 3)
        n = r["image"].astype(np.int16) - ref
        if meta["species"][i] == 0:
            assert not n.any(), i
        else:
            assert np.abs(n).mean() > 3, (i, np.abs(n).mean())


def test_identities_disjoint_and_videos_unique(data_dir):
    metas = {s: ss.load_metadata(CONFIG, data_dir, s) for s in ss.SPLITS}
    ids = {s: set(m["identity"].tolist()) for s, m in metas.items()}
    assert [len(ids[s]) for s in ss.SPLITS] == [4, 4, 4]
    for a, b in itertools.combinations(ss.SPLITS, 2):
        assert not ids[a] & ids[b], (a, b)
    keys = np.concatenate([np.stack([m["video"], m["frame"]], 1) for m in metas.values()])
    assert len(np.unique(keys, axis=0)) == len(keys)
    # A video belongs to one (identity, species, device) only.
    cells = {}
    for m in metas.values():
        for v, i, s, d in zip(m["video"], m["identity"], m["species"], m["device"]):
            assert cells.setdefault(int(v), (i, s, d)) == (i, s, d)


def test_metadata_is_cached_beside_the_data(data_dir):
    builder = ss.prepare(CONFIG, data_dir)
    path = ss.metadata_path(builder, "test")
    first = ss.load_metadata(CONFIG, data_dir, "test")
    assert path.exists()
    # A second call must read the cache: corrupt one column and see it come back. The data dir
    # is shared by the session, so the cache is rebuilt from the records whatever happens.
    try:
        with path.open("wb") as f:
            np.savez(f, **{**first, "device": first["device"] + 100})
        assert (ss.load_metadata(CONFIG, data_dir, "test")["device"] >= 100).all()
    finally:
        path.unlink()
    np.testing.assert_array_equal(ss.load_metadata(CONFIG, data_dir, "test")["device"],
                                  first["device"])


def test_build_is_deterministic_across_dirs_and_workers(tmp_path, capsys):
    # A 90-record config keeps this fast; the second build renders in 2 spawned workers and must
    # write the same records in the same order, byte for byte.
    tiny = ss.SyntheticSpoofConfig(name="tiny32", size=32, train_identities=1, dev_identities=1,
                                   test_identities=1, devices_per_cell=6)
    dirs = [tmp_path / "one_worker", tmp_path / "two_workers"]
    builders = [ss.prepare(tiny, d, num_workers=w) for d, w in zip(dirs, (1, 2))]
    # A build says what it renders before it starts; a prepared build is reused in silence.
    assert "building synthetic_spoof/tiny32 (90 records at 32 px)" in capsys.readouterr().err
    ss.prepare(tiny, dirs[0])
    assert "building" not in capsys.readouterr().err
    for split in ss.SPLITS:
        a, b = (ss.load_source(tiny, d, split) for d in dirs)
        assert len(a) == len(b) == 30
        for i in range(5):
            for key in ("image", "live_reference", "depth", "video", "identity", "device",
                        "species"):
                np.testing.assert_array_equal(a[i][key], b[i][key])
        name = f"synthetic_spoof-{split}.array_record-00000-of-00001"
        first, second = (epath.Path(bl.data_dir) / name for bl in builders)
        assert first.read_bytes() == second.read_bytes()


def test_config_seed_reaches_the_generator():
    config = _config()
    other = ss.SyntheticSpoofConfig(name="s64_small_seed1", size=64, seed=1)
    entry = ss.example_plan(config, "train")[7]
    assert ss.example_plan(other, "train")[7] == entry
    a = ss.synthetic_spoof._render((config, entry))
    b = ss.synthetic_spoof._render((other, entry))
    assert not np.array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["image"], ss.synthetic_spoof._render((config, entry))["image"])


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 8"):
        ss.SyntheticSpoofConfig(name="x", size=60)
    # 2 identities x 2 devices per cell cannot put every species on 6 devices.
    with pytest.raises(ValueError, match="every species"):
        ss.SyntheticSpoofConfig(name="x", train_identities=2, devices_per_cell=2)
    with pytest.raises(ValueError, match="valid names"):
        ss.load_source("s65", "/nonexistent", "train")
    with pytest.raises(ValueError, match="split"):
        ss.example_plan(_config(), "validation")


def _assert_extends(base_name, big_name, grown, factor):
    """`big_name` renders like `base_name`, has its records in every split but `grown`, and
    `factor` times its records in `grown`, starting with them. -> the two configs."""
    as_config = ss.synthetic_spoof.as_config
    base, big = as_config(base_name), as_config(big_name)
    render_fields = ("size", "seed", "difficulty", "world", "devices_per_cell", "videos", "frames")
    assert [getattr(base, f) for f in render_fields] == [getattr(big, f) for f in render_fields]
    for split in ss.SPLITS:
        if split != grown:
            assert ss.example_plan(big, split) == ss.example_plan(base, split)
    small, large = ss.example_plan(base, grown), ss.example_plan(big, grown)
    assert large[:len(small)] == small
    assert len(large) == factor * len(small) == big.num_examples(grown)
    return base, big


@pytest.mark.parametrize("world", ["wide2", "wide4"])
def test_the_4x_train_build_extends_the_t60_build(world):
    """`<world>_s128_t60_x4` has the t60 build's dev and test records and starts its train split with
    the t60 build's train records; its 120 extra training identities come after the test split's,
    so no face of the evaluation splits is trained on."""
    base, big = _assert_extends(f"{world}_s128_t60", f"{world}_s128_t60_x4", "train", 4)
    base_train, big_train = ss.example_plan(base, "train"), ss.example_plan(big, "train")
    train_ids = {e.identity for e in big_train}
    held = {e.identity for s in ("dev", "test") for e in ss.example_plan(big, s)}
    assert len(train_ids) == 160 and not train_ids & held
    assert min(train_ids - {e.identity for e in base_train}) == max(held) + 1
    videos = [e.video for s in ss.SPLITS for e in ss.example_plan(big, s)]
    assert len(set(videos)) * big.frames == len(videos)   # video ids stay unique
    # Every (species, device) pair is in the extra part too (devices rotate on).
    extra = big_train[len(base_train):]
    pairs = {(e.species, e.device) for e in extra}
    assert len(pairs) == len(synthetic.SPECIES) * synthetic.N_CAPTURE_DEVICES


def test_extra_train_identities_are_validated_and_counted():
    with pytest.raises(ValueError, match="extra_train_identities"):
        ss.SyntheticSpoofConfig(name="x", extra_train_identities=-1)
    config = ss.SyntheticSpoofConfig(name="x", extra_train_identities=2)
    assert config.identity_ids("train") == [0, 1, 2, 3, 12, 13]
    assert config.identity_ids("test") == [8, 9, 10, 11]
    assert len(ss.example_plan(config, "train")) == config.num_examples("train") == 6 * 5 * 3


@pytest.mark.parametrize("world", ["wide2", "wide4"])
@pytest.mark.parametrize("tag, first", [("f60", 232), ("g60", 292), ("h60", 352), ("i60", 412),
                                        ("j60", 472), ("k60", 532)])
def test_the_fresh_test_build_uses_identities_no_other_config_does(world, tag, first):
    """`<world>_s128_f60`'s (and the later fresh builds') 60 test identities follow every
    identity of every other config (the x4 builds' extra training ones included), in the same
    render settings as the t60 build: a rule written after a model's t60 figures is decided on
    unseen sessions."""
    fresh = ss.synthetic_spoof.as_config(f"{world}_s128_{tag}")
    t60 = ss.synthetic_spoof.as_config(f"{world}_s128_t60")
    render_fields = ("size", "seed", "difficulty", "world", "devices_per_cell", "videos", "frames")
    assert [getattr(fresh, f) for f in render_fields] == [getattr(t60, f) for f in render_fields]
    test_ids = {e.identity for e in ss.example_plan(fresh, "test")}
    used = {e.identity for c in ss.CONFIGS if c.name != fresh.name and c.world == world
            for s in ss.SPLITS for e in ss.example_plan(c, s)}
    assert test_ids == set(range(first, first + 60)) and not test_ids & used
    own = {e.identity for s in ("train", "dev") for e in ss.example_plan(fresh, s)}
    assert not own & test_ids
    assert fresh.num_examples("test") == t60.num_examples("test") == 3600
    # every species is seen on every device in the test split, as in t60's
    pairs = {(e.species, e.device) for e in ss.example_plan(fresh, "test")}
    assert len(pairs) == len(synthetic.SPECIES) * synthetic.N_CAPTURE_DEVICES


# Worlds whose identity `i` is the same face (wide5's differs from wide2's only in the hair).
_SAME_FACES = ("wide", "wide2", "wide3", "wide5")


@pytest.mark.parametrize("name, first", [("wide_s128_l60", 592), ("wide2_s128_m60", 652),
                                         ("wide5_s128_m60", 652), ("wide2_s128_n60", 712),
                                         ("wide_s128_o60", 772)])
def test_the_2026_12_06_builds_use_faces_no_other_config_does(name, first):
    """`wide_s128_l60` (wide2's direct sessions: the wide world is wide2 without sources and
    content scenes) and the m60 builds of wide2 and wide5 render as the wide2 evaluation builds
    do, and their 60 test identities are new to every config whose identities are the same faces
    (a build's twins with the same tag excepted: the m60 builds are one set of sessions in two
    hairs)."""
    fresh = ss.synthetic_spoof.as_config(name)
    t60 = ss.synthetic_spoof.as_config("wide2_s128_t60")
    render_fields = ("size", "seed", "difficulty", "devices_per_cell", "videos", "frames")
    assert [getattr(fresh, f) for f in render_fields] == [getattr(t60, f) for f in render_fields]
    assert fresh.world == name.split("_")[0]
    tag = name.rsplit("_", 1)[1]
    test_ids = {e.identity for e in ss.example_plan(fresh, "test")}
    used = {e.identity for c in ss.CONFIGS if c.world in _SAME_FACES and not c.name.endswith(tag)
            for s in ss.SPLITS for e in ss.example_plan(c, s)}
    assert test_ids == set(range(first, first + 60)) and not test_ids & used
    assert fresh.num_examples("test") == 3600


def test_test_first_identity_is_validated_and_extra_train_follows_it():
    with pytest.raises(ValueError, match="test_first_identity"):
        ss.SyntheticSpoofConfig(name="x", test_first_identity=7)   # inside dev [4, 8)
    config = ss.SyntheticSpoofConfig(name="x", test_first_identity=20, extra_train_identities=1)
    assert config.identity_ids("test") == [20, 21, 22, 23]
    assert config.identity_ids("dev") == [4, 5, 6, 7]
    assert config.identity_ids("train") == [0, 1, 2, 3, 24]


def test_the_5x_test_build_extends_wide2_s128():
    """`wide2_s128_t60` is an evaluation build: train and dev are `wide2_s128`'s records (a model
    trained on one has the other's dev statistics and threshold) and its test split starts with
    `wide2_s128`'s test records, then 48 more identities."""
    base, big = _assert_extends("wide2_s128", "wide2_s128_t60", "test", 5)
    base_test, big_test = ss.example_plan(base, "test"), ss.example_plan(big, "test")
    assert len({e.identity for e in big_test}) == 60
    last_dev = max(e.identity for e in ss.example_plan(big, "dev"))
    assert min(e.identity for e in big_test) == last_dev + 1
    # The same plan entry under either config renders the same record (one test record checked).
    entry = base_test[5]
    a = ss.synthetic_spoof._render((base, entry))
    b = ss.synthetic_spoof._render((big, entry))
    for k in ("image", "live_reference", "depth", "photo_source", "scene_content"):
        np.testing.assert_array_equal(a[k], b[k])
