"""The wide synthetic world (issue #14, `despoof_jax.data.synthetic.wide`): the contract of
`make_example(world="wide")`, its physics-family columns, its determinism through the builder,
the camera pipelines' own signatures, and the unseen-physics protocols."""
import dataclasses

import numpy as np
import pytest
from etils import epath
from scipy import ndimage

from despoof_jax.data import protocols, synthetic
from despoof_jax.data.builders import synthetic_spoof as ss
from despoof_jax.data.synthetic import camera, faces, generator, make_example, spoof, wide
from despoof_jax.data.synthetic._util import pixel_grid, rng_for
from tests.util import example_digest, example_digest_in_fresh_process


def _wide(**kw):
    args = dict(seed=5, identity=2, species=0, device=1, video=3, frame=0, size=64, world="wide")
    args.update(kw)
    return make_example(**args)


@pytest.mark.parametrize("world", ("wide", "wide2", "wide3", "wide4", "wide5"))
@pytest.mark.parametrize("species", range(len(synthetic.SPECIES)))
def test_contract_and_family_columns(species, world):
    ex = _wide(species=species, world=world)
    base_keys = {"image", "live_reference", "depth", "label", "species", "device", "identity",
                 "video", "frame"}
    assert set(ex) == base_keys | set(synthetic.WIDE_FIELDS)
    assert ex["image"].shape == ex["live_reference"].shape == (64, 64, 3)
    assert ex["image"].dtype == ex["live_reference"].dtype == ex["depth"].dtype == np.uint8
    assert ex["depth"].shape == (64, 64)
    assert ex["depth"].max() > 200 if ex["scene_content"] == -1 else ex["depth"].max() == 0
    # The ground truth keeps its definition: N* = image - live_reference is zero only for live.
    assert np.array_equal(ex["image"], ex["live_reference"]) == (species == 0)
    assert 0 <= ex["camera_pipeline"] < len(wide.CAMERA_PIPELINES)
    assert -1 <= ex["photo_source"] < len(wide.PHOTO_SOURCES)
    assert -1 <= ex["scene_content"] < len(wide.CONTENT_IMAGES)
    if world == "wide":   # the first round's physics only
        assert ex["photo_source"] == ex["scene_content"] == -1
    expect_print = ex["print_family"] in wide.SPECIES_FAMILIES.get(species, ()) if species in (1, 2) \
        else ex["print_family"] == -1
    expect_display = ex["display_layout"] in wide.SPECIES_FAMILIES[species] if species in (3, 4) \
        else ex["display_layout"] == -1
    assert expect_print and expect_display
    if species:   # the medium changed the picture, and not by a little
        diff = np.abs(ex["image"].astype(int) - ex["live_reference"].astype(int)).mean()
        assert diff > 2


def test_every_family_is_reached_and_drawn_from_its_own_stream():
    # Sessions (videos) draw families independently; 40 sessions reach every family.
    seen = {k: set() for k in synthetic.WIDE_FIELDS}
    for v in range(40):
        r = rng_for(5, 0x31DE, 2, 1, 1, v, 22)   # the wide camera stream (generator._W_CAMERA)
        seen["camera_pipeline"].add(wide.sample_pipeline(r).kind)
        for sp in (1, 2):
            seen["print_family"].add(wide.sample_print(rng_for(v, sp), sp, 1.0).family)
        for sp in (3, 4):
            seen["display_layout"].add(wide.sample_display(rng_for(v, sp), sp, 1.0).layout)
    assert seen["camera_pipeline"] == set(range(len(wide.CAMERA_PIPELINES)))
    assert seen["print_family"] == set(range(len(wide.PRINT_FAMILIES)))
    assert seen["display_layout"] == set(range(len(wide.DISPLAY_LAYOUTS)))


def test_deterministic_and_distinct_from_the_base_world():
    a, b = _wide(species=4), _wide(species=4)
    assert example_digest(a) == example_digest(b)
    base = make_example(seed=5, identity=2, species=4, device=1, video=3, frame=0, size=64)
    assert set(base) == set(a) - set(synthetic.WIDE_FIELDS)   # base records: no new columns
    assert example_digest(base) != example_digest(a)


def test_video_codec_leaves_8x8_blocks_and_demosaic_keeps_flat_colour():
    rng = np.random.default_rng(0)
    img = np.clip(ndimage.gaussian_filter(rng.uniform(0, 255, (64, 64, 3)), (2, 2, 0)), 0, 255).astype(np.uint8)
    out = wide.video_codec(img, 20).astype(float)
    dx = np.abs(np.diff(out, axis=1)).mean((0, 2))      # [63] steps between columns
    at_edges = dx[7::8].mean()
    inside = np.delete(dx, np.s_[7::8]).mean()
    assert at_edges > 1.3 * inside                        # blocking at the 8-px block edges
    flat = np.zeros((16, 16), np.float32)
    flat[0::2, 0::2], flat[1::2, 1::2], flat[0::2, 1::2], flat[1::2, 0::2] = 0.2, 0.4, 0.5, 0.5
    rgb = wide.demosaic_bilinear(flat)                   # RGGB of the colour (0.2, 0.5, 0.4)
    np.testing.assert_allclose(rgb[4:-4, 4:-4], np.broadcast_to([0.2, 0.5, 0.4], (8, 8, 3)),
                               atol=1e-6)


def test_raw_pipelines_share_the_noise_stream_with_their_twin():
    # The live reference is captured through `generator._twin(noise_rng)`, the spoof through
    # `noise_rng` itself: two different scenes that every pipeline must give the same noise
    # draws, or N* would carry sensor noise. Read noise only (no shot noise), so a draw's effect
    # does not depend on the signal; the noise of a capture is its output minus the noise-free
    # capture of the same scene, and the two scenes' noises must match pixel for pixel
    # (correlation), unlike those of an independent stream.
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32) / 96
    flat = np.full((96, 96, 3), 0.3, np.float32)
    other = (0.3 + 0.06 * np.stack([np.sin(6 * xx), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1))
    other = other.astype(np.float32)
    profile = dataclasses.replace(camera.device_profile(0), shot=0.0, read=0.02, sharpen=0.0)
    quiet = dataclasses.replace(profile, read=0.0)
    settings = camera.sample_settings(profile, rng_for(1))

    def noise(scene, rng, pipe):
        out = wide.capture(scene, 3, profile, settings, rng, pipe).astype(np.float32)
        clean = wide.capture(scene, 3, quiet, settings, rng_for(0), pipe).astype(np.float32)
        return (out - clean)[8:-8, 8:-8].ravel()

    for kind in range(len(wide.CAMERA_PIPELINES)):
        pipe = dataclasses.replace(wide.sample_pipeline(rng_for(kind, 9)), kind=kind, quality=95)
        rng = rng_for(2)
        twin = generator._twin(rng)
        reference, spoofed = noise(flat, twin, pipe), noise(other, rng, pipe)
        independent = noise(other, rng_for(3), pipe)
        assert reference.std() > 1.0                                      # noise is visible
        assert np.corrcoef(reference, spoofed)[0, 1] > 0.8, wide.CAMERA_PIPELINES[kind]
        assert abs(np.corrcoef(reference, independent)[0, 1]) < 0.2
        # Both captures consumed the same draws: the streams stay in step for the next frame.
        assert rng.bit_generator.state == twin.bit_generator.state


def test_wide_build_is_deterministic_and_records_families(tmp_path):
    tiny = ss.SyntheticSpoofConfig(name="tiny_wide32", size=32, train_identities=1,
                                   dev_identities=1, test_identities=1, devices_per_cell=6,
                                   world="wide2")
    dirs = [tmp_path / "one", tmp_path / "two"]
    builders = [ss.prepare(tiny, d, num_workers=w) for d, w in zip(dirs, (1, 2))]
    name = "synthetic_spoof-train.array_record-00000-of-00001"
    first, second = (epath.Path(b.data_dir) / name for b in builders)
    assert first.read_bytes() == second.read_bytes()
    meta = ss.load_metadata(tiny, dirs[0], "train")
    assert set(meta) == set(ss.WIDE_METADATA_KEYS)
    live = meta["species"] == 0
    prints = np.isin(meta["species"], (1, 2))
    assert (meta["print_family"][~prints] == -1).all() and (meta["print_family"][prints] >= 0).all()
    assert (meta["display_layout"][live] == -1).all()
    # 30 sessions: the second round's stages are drawn, and left out, in some of them.
    assert {-1, 0, 1} <= set(meta["photo_source"]) and -1 in set(meta["scene_content"])
    assert (meta["scene_content"] >= 0).any()
    record = ss.load_source(tiny, dirs[0], "train")[7]
    assert int(record["camera_pipeline"]) == meta["camera_pipeline"][7]
    with pytest.raises(ValueError, match="world"):
        ss.SyntheticSpoofConfig(name="x", world="narrow")


def test_unseen_physics_protocols_hold_one_family_out():
    rng = np.random.default_rng(0)
    n = 400
    species = rng.integers(0, 5, n)
    meta = {"species": species, "device": rng.integers(0, 6, n),
            "print_family": np.where(np.isin(species, (1, 2)), rng.integers(0, 5, n), -1),
            "display_layout": np.where(np.isin(species, (3, 4)), rng.integers(0, 5, n), -1),
            "camera_pipeline": rng.integers(0, 4, n), "photo_source": rng.integers(-1, 2, n)}
    for name, column, attacks in (("unseen_print_family", "print_family", {1, 2}),
                                  ("unseen_display_layout", "display_layout", {3, 4}),
                                  ("unseen_camera_pipeline", "camera_pipeline", None)):
        p = protocols.get_protocol(name)
        assert len(p.folds) == {"print_family": 5, "display_layout": 5, "camera_pipeline": 4}[column]
        for k in range(len(p.folds)):
            train = protocols.select_indices(meta, p, "train", fold=k)
            test = protocols.select_indices(meta, p, "test", fold=k)
            assert k not in set(meta[column][train])
            assert set(meta[column][test]) <= {-1, k} and k in set(meta[column][test])
            if attacks:
                assert set(species[test]) == {0} | attacks   # live + the held-out family only
                assert set(species[train]) == set(range(5))   # everything else still trains
    assert "unseen_print_family" not in protocols.PROTOCOLS   # base datasets lack the columns
    # The video codec is held out with the bayer_video pipeline: also as a photo source
    # (video_frame), in train and dev; the test split keeps every bayer_video record.
    p = protocols.get_protocol("unseen_camera_pipeline")
    video, frame = wide.CAMERA_PIPELINES.index("bayer_video"), wide.PHOTO_SOURCES.index("video_frame")
    for k in range(len(p.folds)):
        for split in ("train", "dev"):
            idx = protocols.select_indices(meta, p, split, fold=k)
            sources = set(meta["photo_source"][idx])
            assert sources == ({-1, 0} if k == video else {-1, 0, 1}), (k, split, sources)
            assert set(meta["camera_pipeline"][idx]) == set(range(4)) - {k}
        test = protocols.select_indices(meta, p, "test", fold=k)
        np.testing.assert_array_equal(test, np.flatnonzero(meta["camera_pipeline"] == k))
    assert frame in set(meta["photo_source"][protocols.select_indices(meta, p, "test", fold=video)])


def _source(**kw):
    args = dict(kind=0, res=1.0, exposure=0.2, luma=0.0, chroma=0.0, grain=0.5, saturation=1.0,
                contrast=0.0, sharpen=0.0, quality=95, subsample=False)
    args.update(kw)
    return wide.PhotoSource(**args)


def _high_band(img):
    """Energy of a [n, n, 3] image above a quarter of the Nyquist frequency, per pixel."""
    return float(np.mean((img - ndimage.gaussian_filter(img, (2, 2, 0))) ** 2))


def test_photograph_keeps_level_and_takes_the_source_cameras_texture():
    rng = np.random.default_rng(0)
    texture = np.clip(0.2 + 0.1 * rng.standard_normal((128, 128, 3)), 0.01, 1).astype(np.float32)
    texture = ndimage.gaussian_filter(texture, (0.7, 0.7, 0))
    clean = wide.photograph(texture, 1.0, _source(), rng_for(1))
    assert clean.shape == texture.shape and clean.dtype == np.float32
    # Linear units in, linear units out: a near-lossless source keeps level and detail.
    np.testing.assert_allclose(clean.mean((0, 1)), texture.mean((0, 1)), rtol=0.05)
    assert abs(_high_band(clean) / _high_band(texture) - 1) < 0.35
    # A small source photo enlarged to the table is soft: most fine detail is gone.
    small = wide.photograph(texture, 1.0, _source(res=0.5), rng_for(1))
    assert _high_band(small) < 0.3 * _high_band(texture)
    # Noise of the source camera shows on a flat scene, in luma and (with chroma) across channels.
    flat = np.full((128, 128, 3), 0.2, np.float32)
    quiet = wide.photograph(flat, 0.5, _source(), rng_for(2))
    noisy = wide.photograph(flat, 0.5, _source(luma=0.03, chroma=0.04), rng_for(2))
    assert quiet.std() < 0.2 * noisy.std()
    spread = noisy - noisy.mean(-1, keepdims=True)
    assert spread.std() > 0.3 * noisy.std()
    # Deterministic in its rng; the video source blocks on its 8-px grid (here 1 texel = 1 px).
    video = _source(kind=1, quality=20, subsample=True)
    a = wide.photograph(texture, 1.0, video, rng_for(3))
    np.testing.assert_array_equal(a, wide.photograph(texture, 1.0, video, rng_for(3)))
    dx = np.abs(np.diff(a ** (1 / 2.2), axis=1)).mean((0, 2))
    assert dx[7::8].mean() > 1.2 * np.delete(dx, np.s_[7::8]).mean()


def test_photo_sources_follow_one_law_for_live_and_attackers_photo(monkeypatch):
    def both(p):
        monkeypatch.setattr(wide, "PHOTO_SOURCE_P", p)
        monkeypatch.setattr(wide, "CONTENT_P", 0.0)
        return [_wide(species=s, world="wide2") for s in (0, 3)]
    direct, photo = both(0.0), both(1.0)
    assert [e["photo_source"] for e in direct] == [-1, -1]
    assert photo[0]["photo_source"] >= 0 and photo[1]["photo_source"] >= 0
    for d, p in zip(direct, photo):
        # The source camera changes the live face and the photo the display shows (hence its
        # ideal-medium reference), but nothing else of the session: same depth label.
        assert np.abs(d["image"].astype(int) - p["image"].astype(int)).mean() > 1
        assert np.abs(d["live_reference"].astype(int) - p["live_reference"].astype(int)).mean() > 1
        np.testing.assert_array_equal(d["depth"], p["depth"])
    # N* stays the medium's alone: the replay's noise is as large with or without a photo source.
    n_direct = np.abs(direct[1]["image"].astype(int) - direct[1]["live_reference"]).mean()
    n_photo = np.abs(photo[1]["image"].astype(int) - photo[1]["live_reference"]).mean()
    assert 0.5 < n_photo / n_direct < 2
    assert np.array_equal(photo[0]["image"], photo[0]["live_reference"])


def test_photo_source_law_reaches_both_kinds_and_the_direct_case():
    drawn = [wide.sample_photo_source(rng_for(7, v)) for v in range(60)]
    kinds = [-1 if d is None else d.kind for d in drawn]
    assert set(kinds) == {-1, 0, 1}
    share = np.mean([k >= 0 for k in kinds])
    assert abs(share - wide.PHOTO_SOURCE_P) < 0.2
    res = [d.res for d in drawn if d is not None]
    assert min(res) >= 0.5 and max(res) <= 3.0 and min(res) < 0.9 and max(res) > 1.5


def test_content_scenes_are_pictures_without_depth_live_and_spoofed(monkeypatch):
    monkeypatch.setattr(wide, "CONTENT_P", 1.0)
    monkeypatch.setattr(wide, "PHOTO_SOURCE_P", 0.0)
    live, replay = _wide(species=0, world="wide2"), _wide(species=3, world="wide2")
    assert live["scene_content"] >= 0 and replay["scene_content"] >= 0
    assert live["depth"].max() == 0 and replay["depth"].max() == 0  # no face, no depth
    assert live["image"].std() > 10                                  # a picture, not a flat field
    # The spoof shows that picture through a medium; its reference shows it without one.
    n_star = np.abs(replay["image"].astype(int) - replay["live_reference"].astype(int)).mean()
    assert n_star > 2
    monkeypatch.setattr(wide, "CONTENT_P", 0.0)
    person = _wide(species=0, world="wide2")
    assert person["scene_content"] == -1 and person["depth"].max() > 200
    # A wide2 session that draws neither is the wide session, byte for byte, live or spoof (the
    # ground of `wide_s128_l60`, a build of wide2's direct sessions alone).
    np.testing.assert_array_equal(person["image"], _wide(species=0)["image"])
    for species in (1, 3):
        direct, plain = _wide(species=species, world="wide2"), _wide(species=species)
        for key in ("image", "live_reference", "depth"):
            np.testing.assert_array_equal(direct[key], plain[key])
    assert wide.sample_content(rng_for(1), 32) is None
    monkeypatch.setattr(wide, "CONTENT_P", 1.0)
    drawn = {wide.sample_content(rng_for(1, v), 32)[0] for v in range(80)}
    assert drawn == set(range(len(wide.CONTENT_IMAGES)))
    assert not {"astronaut", "camera"} & set(wide.CONTENT_IMAGES)   # reserved faces: never data


# ---- world wide3: area-sampled lattices and screens (2026-12-04) ----------------------------------

_FLAT_SETTINGS = camera.CaptureSettings(defocus=0.0, motion=0.0, motion_angle=0.0, ev=0.0, jpeg=95,
                                        phase=(0.0, 0.0))


def _flat_medium_capture(ss, footprint, size=40, display=None, print_=None, roll=4.0):
    """A flat grey photo on a display (`display`: wide.DisplayParams) or a print (`print_`),
    rolled by `roll` degrees, sampled ss per output px (`footprint`: as in
    `wide.display_emission`), through the camera's optics and pixels (blur 0.35 px) ->
    linear [size, size, 3] without its 1/8 border."""
    x, y = pixel_grid(size * ss, 1.0)
    mx, my = spoof.medium_coords(x, y, spoof.MediumPose(roll=np.deg2rad(roll)))
    if display is not None:
        src = np.full((64, 64, 3), 0.4, np.float32)
        rad = wide.display_emission(src, 1.3, mx, my, size / 2, display, footprint=footprint)
    else:
        table = np.concatenate([np.full((64, 64, 3), 0.35, np.float32),
                                np.zeros((64, 64, 1), np.float32)], -1)
        rad = wide.print_reflectance(table, 1.3, mx, my, size / 2, print_, footprint=footprint)
    profile = dataclasses.replace(camera.device_profile(0), psf=0.35)
    m = size // 8
    return camera.expose(rad, ss, profile, _FLAT_SETTINGS)[m:-m, m:-m]


def _spread(img):
    """Relative spread of a flat picture after the camera (std / mean, mean over channels): the
    moire a lattice leaves."""
    return float((img.std((0, 1)) / img.mean((0, 1))).mean())


@pytest.mark.parametrize("layout", ("rgb_stripe", "pentile"))
def test_wide3_display_lattice_converges_to_dense_sampling(layout):
    """At a fine pitch (0.8 px) the point-sampled lattice of wide/wide2 aliases on the SS_SPOOF
    grid into strong fake moire; wide3's footprint average (generator.FOOTPRINT) brings the
    camera's output to within a small factor of point sampling at 24 samples/px, a brute-force
    reference (measured: rgb_stripe 0.30 -> 0.012 vs 0.003; pentile 0.26 -> 0.041 vs 0.043)."""
    k = wide.DISPLAY_LAYOUTS.index(layout)
    tone = spoof.DisplayParams(pitch=0.8, layout=layout, aperture=0.7, gamma=2.2, black=0.0,
                               white=np.ones(3, np.float32), mod=0.9, blend=0.0,
                               blend_shift=(0.0, 0.0), flicker=(0.0, 1.0, 0.0))
    display = wide.DisplayParams(k, tone)
    ss = generator.SS_SPOOF
    point = _spread(_flat_medium_capture(ss, 1, display=display))
    area = _spread(_flat_medium_capture(ss, generator.FOOTPRINT, display=display))
    dense = _spread(_flat_medium_capture(24, 1, display=display))
    assert generator.FOOTPRINT > 1
    assert point > 0.2                                 # the old sampling's fake moire
    # The error against dense sampling shrinks > 5x, and what is left is close to it.
    assert abs(area - dense) < 0.2 * abs(point - dense), (area, point, dense)
    assert area < 5 * dense + 0.005, (area, dense)


def test_wide3_stochastic_screen_converges_to_dense_sampling():
    """An FM screen of 0.5 px cells (hard-edged threshold cells): wide3's footprint average is
    far closer to the dense reference than point sampling (measured rms 0.17 -> 0.03)."""
    for v in range(500):
        p = wide.sample_print(rng_for(v, 9), 2, 1.0)
        if p.family == 2 and abs(p.dot - 0.5) < 0.08:
            break
    p = dataclasses.replace(p, base=dataclasses.replace(p.base, grain=0.0, mod=1.0))
    dense = _flat_medium_capture(24, 1, print_=p, roll=3.0)

    def rms(img):
        return float(np.sqrt(((img - dense) ** 2).mean()) / dense.mean())
    point = rms(_flat_medium_capture(generator.SS_SPOOF, 1, print_=p, roll=3.0))
    area = rms(_flat_medium_capture(generator.SS_SPOOF, generator.FOOTPRINT, print_=p, roll=3.0))
    assert point > 0.08 and area < 0.35 * point, (area, point)


def test_wide3_fixes_the_moire_of_a_fine_pitch_record_and_keeps_the_sessions(monkeypatch):
    """End to end: a wide2 session with a 0.85 px BGR stripe. Its point-sampled N* is ~3x what
    dense sampling (SS_SPOOF = 12) gives; wide3's matches dense sampling within 20 %. Wide3 is
    wide2's sessions: its live records are wide2's byte for byte."""
    args = dict(seed=0, identity=1, species=3, device=2, video=4, frame=0, size=64)

    def n_star(world):
        ex = make_example(**args, world=world)
        assert (ex["display_layout"], ex["scene_content"]) == (1, -1)   # bgr_stripe, a person
        return np.abs(ex["image"].astype(float) - ex["live_reference"]).mean()
    wide2, wide3 = n_star("wide2"), n_star("wide3")
    monkeypatch.setattr(generator, "SS_SPOOF", 12)
    dense = n_star("wide2")
    assert wide2 > 2 * dense and abs(wide3 - dense) < 0.2 * dense, (wide2, wide3, dense)
    live = {w: make_example(**(args | dict(species=0)), world=w) for w in ("wide2", "wide3")}
    np.testing.assert_array_equal(live["wide2"]["image"], live["wide3"]["image"])


def test_wide3_refresh_banding_follows_the_camera_rows():
    """A rolled screen's refresh banding (rolling shutter) is constant along each camera row in
    wide3 (`rows`), and tilts with the screen in wide/wide2 (the screen's my)."""
    tone = spoof.DisplayParams(pitch=2.0, layout="rgb_stripe", aperture=0.7, gamma=2.2, black=0.0,
                               white=np.ones(3, np.float32), mod=0.0, blend=0.0,
                               blend_shift=(0.0, 0.0), flicker=(0.3, 0.4, 0.0))
    x, y = pixel_grid(96, 1.0)
    mx, my = spoof.medium_coords(x, y, spoof.MediumPose(roll=np.deg2rad(20)))
    src = np.full((64, 64, 3), 0.4, np.float32)
    display = wide.DisplayParams(0, tone)
    along_rows = {}
    for name, rows in (("camera", y), ("screen", None)):
        rad = wide.display_emission(src, 1.3, mx, my, 32, display, rows=rows)[20:-20, 20:-20, 1]
        along_rows[name] = float(rad.std(1).mean() / rad.mean())
    assert along_rows["camera"] < 1e-5 < 0.05 < along_rows["screen"], along_rows


def test_wide3_is_deterministic_across_calls_and_processes():
    args = dict(seed=5, identity=2, species=4, device=1, video=3, frame=0, size=64, world="wide3")
    first = example_digest(make_example(**args))
    make_example(**(args | dict(species=1, video=4)))      # other work in between
    assert example_digest(make_example(**args)) == first
    assert example_digest_in_fresh_process(args) == first
    assert example_digest(make_example(**(args | dict(world="wide2")))) != first


def test_wide3_configs_mirror_wide2_and_render():
    for suffix in ("smoke", "s128"):
        configs = {c.name: c for c in ss.CONFIGS}
        w2, w3 = configs[f"wide2_{suffix}"], configs[f"wide3_{suffix}"]
        fields = [f.name for f in dataclasses.fields(ss.SyntheticSpoofConfig)
                  if f.name not in ("name", "description", "world")]
        assert all(getattr(w2, f) == getattr(w3, f) for f in fields), suffix
        assert (w3.world, w3.metadata_keys) == ("wide3", ss.WIDE_METADATA_KEYS)
    assert str(ss.SyntheticSpoof.VERSION) == "1.3.0"   # a resumed run reads the 1.3.0 builds
    config = w3   # wide3_s128
    entry = ss.example_plan(config, "train")[3]
    record = ss.synthetic_spoof._render((dataclasses.replace(config, size=64), entry))
    expect = make_example(seed=config.seed, size=64, world="wide3", **entry._asdict())
    np.testing.assert_array_equal(record["image"], expect["image"])
    assert set(synthetic.WIDE_FIELDS) <= set(record)


@pytest.mark.parametrize("species", range(len(synthetic.SPECIES)))
def test_session_physics_are_the_draws_make_example_renders_with(species, monkeypatch):
    # Record what the renderer itself draws (print or screen, pipeline, photo source) and
    # compare every physics column with the replay that renders nothing.
    drawn = {}

    def spy(name):
        real = getattr(wide, name)

        def record(*a, **k):
            drawn[name] = real(*a, **k)
            return drawn[name]
        monkeypatch.setattr(wide, name, record)
    for name in ("sample_print", "sample_display", "sample_pipeline", "sample_photo_source"):
        spy(name)
    # Sessions chosen for a photo source and for each medium's parameters to be present.
    for video in range(6):
        session = dict(seed=5, identity=2, species=species, device=1, video=video)
        drawn.clear()
        make_example(**session, frame=1, size=32, difficulty=1.5, world="wide2")
        got = generator.session_physics(**session, difficulty=1.5, world="wide2")
        assert set(got) == set(synthetic.PHYSICS_COLUMNS)
        pipe, src = drawn["sample_pipeline"], drawn["sample_photo_source"]
        assert (got["camera_gain"], got["camera_quality"]) == (pipe.gain, pipe.quality)
        assert (np.isnan(got["source_res"]) if src is None
                else (got["source_res"], got["source_quality"]) == (src.res, src.quality))
        if species in (3, 4):
            t = drawn["sample_display"].tone
            assert (got["display_pitch"], got["display_aperture"], got["display_contrast"]) \
                == (t.pitch, t.aperture, t.mod)
        else:
            assert np.isnan(got["display_pitch"])
        if species in (1, 2):
            p = drawn["sample_print"]
            assert got["print_contrast"] == p.base.mod
            family = wide.PRINT_FAMILIES[p.family]
            assert (got["print_period"] == p.base.period) == (family in ("am_dot", "am_line"))
            assert (got["print_dot"] == p.dot) == (family in ("fm_bluenoise", "inkjet"))
        else:
            assert np.isnan(got["print_contrast"])
    with pytest.raises(ValueError, match="wide worlds only"):
        generator.session_physics(**session, world="base")


def test_physics_table_follows_the_plan_and_refuses_the_base_world():
    cfg = next(c for c in ss.CONFIGS if c.name == "wide2_smoke")
    table, plan = ss.physics_table(cfg, "test"), ss.example_plan(cfg, "test")
    assert all(len(v) == len(plan) for v in table.values())
    for i in (0, len(plan) // 2, len(plan) - 1):
        e = plan[i]
        want = generator.session_physics(seed=cfg.seed, identity=e.identity, species=e.species,
                                         device=e.device, video=e.video,
                                         difficulty=cfg.difficulty, world=cfg.world)
        np.testing.assert_array_equal([table[c][i] for c in synthetic.PHYSICS_COLUMNS],
                                      [want[c] for c in synthetic.PHYSICS_COLUMNS])
    species = np.array([e.species for e in plan])
    assert np.isnan(table["display_pitch"][species < 3]).all()
    assert (0.7 <= table["display_pitch"][species >= 3]).all()
    assert (table["display_pitch"][species >= 3] <= 4.5).all()
    with pytest.raises(ValueError, match="base-world"):
        ss.physics_table("s64_small", "test")


# ---- world wide4: wide2's physics through a sensor finer than the crop (2026-12-04) ---------------

def _session_with_scale(species, want):
    """(video, capture side) of the first wide4 session (seed 5, identity 2, device 1) whose
    capture side at 64 px satisfies `want`."""
    for video in range(200):
        cap = generator.capture_size(seed=5, identity=2, species=species, device=1, video=video,
                                     size=64)
        if want(cap):
            return video, cap
    raise AssertionError("no such session in 200")


def test_capture_scale_spans_its_range_log_uniformly():
    caps = np.array([generator.capture_size(seed=5, identity=i, species=i % 5, device=1, video=v,
                                            size=128) for i in range(20) for v in range(20)])
    assert (caps % 8 == 0).all() and caps.min() == 128 and caps.max() >= 368
    assert caps.max() <= 3 * 128
    # Log-uniform on [1, 3]: the median scale is sqrt(3) = 1.73 (+- sampling and rounding).
    assert 1.6 < np.median(caps) / 128 < 1.9
    # A session's frames share the scale; live and attack sessions draw it from equal streams.
    assert generator.capture_size(seed=5, identity=3, species=0, device=1, video=2, size=64) == \
        generator.capture_size(seed=5, identity=3, species=0, device=1, video=2, size=64)


@pytest.mark.parametrize("species", (0, 2, 3))
def test_wide4_is_wide2_captured_at_its_capture_size_and_shrunk(species):
    from despoof_jax.data.synthetic._util import shrink
    video, cap = _session_with_scale(species, lambda c: c >= 128)
    args = dict(seed=5, identity=2, species=species, device=1, video=video, frame=1)
    w4 = make_example(**args, size=64, world="wide4")
    w2 = make_example(**args, size=cap, world="wide2")
    for k in ("image", "live_reference"):
        np.testing.assert_array_equal(w4[k], shrink(w2[k], 64))
    # Depth is shrunk as float, before the uint8 rounding that wide2's record went through.
    assert np.abs(w4["depth"].astype(int) - shrink(w2["depth"].astype(np.float32), 64)).max() <= 2
    assert all(w4[k] == w2[k] for k in synthetic.WIDE_FIELDS)
    # A session drawn at the crop's own size is wide2's record itself.
    video, cap = _session_with_scale(species, lambda c: c == 64)
    args = dict(seed=5, identity=2, species=species, device=1, video=video, frame=0, size=64)
    assert example_digest(make_example(**args, world="wide4")) == \
        example_digest(make_example(**args, world="wide2"))


def test_shrink_is_the_resize_score_gives_a_users_crop():
    from despoof_jax.data.synthetic._util import shrink
    from despoof_jax.serving import model as serving_model
    img = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    np.testing.assert_array_equal(shrink(img, 128), serving_model._resize(img, 128))
    # It is antialiased: a 1 px checkerboard shrunk 2.5x is nearly flat (point sampling would
    # keep full-contrast aliases).
    board = (np.indices((320, 320)).sum(0) % 2 * 255).astype(np.uint8)
    assert shrink(np.repeat(board[..., None], 3, -1), 128).std() < 0.1 * board.std()


def test_wide4_physics_are_in_crop_px():
    video, cap = _session_with_scale(3, lambda c: c > 100)
    session = dict(seed=5, identity=2, species=3, device=1, video=video)
    w4 = generator.session_physics(**session, world="wide4", size=64)
    w2 = generator.session_physics(**session, world="wide2")
    scale = cap / 64
    assert w4["capture_scale"] == scale and w2["capture_scale"] == 1.0
    assert w4["display_pitch"] == pytest.approx(w2["display_pitch"] / scale)
    assert w4["display_aperture"] == w2["display_aperture"]
    with pytest.raises(ValueError, match="size"):
        generator.session_physics(**session, world="wide4")
    cfg = next(c for c in ss.CONFIGS if c.name == "wide4_smoke")
    table = ss.physics_table(cfg, "test")
    assert (table["capture_scale"] >= 1).all() and (table["capture_scale"] <= 3).all()
    assert table["capture_scale"].max() > 1.5


@pytest.mark.parametrize("world, suffixes, split, index", [
    ("wide4", ("smoke", "s128", "s128_t60"), "dev", 7),
    ("wide5", ("smoke", "s128", "s128_t60", "s128_i60", "s128_m60"), "test", 2)])
def test_world_configs_mirror_wide2_and_render(world, suffixes, split, index):
    configs = {c.name: c for c in ss.CONFIGS}
    fields = [f.name for f in dataclasses.fields(ss.SyntheticSpoofConfig)
              if f.name not in ("name", "description", "world")]
    for suffix in suffixes:
        w2, twin = configs[f"wide2_{suffix}"], configs[f"{world}_{suffix}"]
        assert all(getattr(w2, f) == getattr(twin, f) for f in fields), suffix
        assert (twin.world, twin.metadata_keys) == (world, ss.WIDE_METADATA_KEYS)
    config = configs[f"{world}_smoke"]
    entry = ss.example_plan(config, split)[index]
    record = ss.synthetic_spoof._render((config, entry))
    expect = make_example(seed=config.seed, size=64, world=world, **entry._asdict())
    np.testing.assert_array_equal(record["image"], expect["image"])
    np.testing.assert_array_equal(record["live_reference"], expect["live_reference"])


def test_wide4_is_deterministic_across_processes():
    video, _ = _session_with_scale(4, lambda c: c > 64)
    args = dict(seed=5, identity=2, species=4, device=1, video=video, frame=0, size=64,
                world="wide4")
    assert example_digest_in_fresh_process(args) == example_digest(make_example(**args))


# ---- world wide5: hair that follows the head (2026-12-06) -----------------------------------------

def _hair_fine_energy(table):
    """(horizontal, vertical) first-difference energy of the hair albedo's luminance over its
    variance: a texture's share of fine detail along each axis."""
    hair = (table[..., 1] > 0.5) & (table[..., 2] < 0.5) & np.isclose(table[..., 6], 0.06)
    lum = table[..., 3:6] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    dx = np.diff(lum, axis=1)[hair[:, 1:] & hair[:, :-1]]
    dy = np.diff(lum, axis=0)[hair[1:] & hair[:-1]]
    return float(np.mean(dx ** 2) / lum[hair].var()), float(np.mean(dy ** 2) / lum[hair].var())


def test_wide5_hair_is_locks_along_the_head_not_a_vertical_grating():
    ratios = []
    for ident in range(1, 9):
        streaks, flow = faces.identity(5, ident, "streaks"), faces.identity(5, ident, "flow")
        # Only the albedo changes (the same draws; the hair and the brows drawn in it).
        for c in (0, 1, 2, 6, 7, 8, 9):
            np.testing.assert_array_equal(streaks.table[..., c], flow.table[..., c])
        assert streaks.shininess == flow.shininess
        face = streaks.table[..., 2] > 0.5
        same = np.all(streaks.table[..., 3:6] == flow.table[..., 3:6], -1)
        assert same[face].mean() > 0.97 and not same.all()
        # The earlier worlds' streaks: fine detail across (horizontal), ~30x less along: a grating.
        sx, sy = _hair_fine_energy(streaks.table)
        assert sx > 0.5 and sx > 20 * sy
        # wide5's locks: a few times less fine detail, and far less of an axis (measured on 30
        # identities: 5-25 % of the streaks' energy, x/y 0.5-1.6 but one short-haired 4.9).
        fx, fy = _hair_fine_energy(flow.table)
        assert fx < 0.3 * sx and fx / fy < (sx / sy) / 5
        ratios.append(fx / fy)
    assert 0.5 < np.median(ratios) < 2
    with pytest.raises(ValueError, match="hair must be one of"):
        faces.identity(5, 1, "curly")


def test_wide5_is_wide2_but_for_the_hair():
    args = dict(seed=5, identity=2, device=1, video=3, frame=0, size=64)
    for species in (0, 1, 3):
        w2 = make_example(species=species, world="wide2", **args)
        w5 = make_example(species=species, world="wide5", **args)
        assert {k: w5[k] for k in synthetic.WIDE_FIELDS} == {k: w2[k] for k in synthetic.WIDE_FIELDS}
        np.testing.assert_array_equal(w5["depth"], w2["depth"])
        assert not np.array_equal(w5["image"], w2["image"])
    np.testing.assert_equal(   # NaN where a column does not apply, in both
        generator.session_physics(seed=5, identity=2, species=3, device=1, video=3, world="wide5"),
        generator.session_physics(seed=5, identity=2, species=3, device=1, video=3, world="wide2"))
    assert example_digest_in_fresh_process(args | dict(species=4, world="wide5")) == \
        example_digest(make_example(species=4, world="wide5", **args))

