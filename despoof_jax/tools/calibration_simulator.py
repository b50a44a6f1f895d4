"""Threshold calibration on a held-out simulator (issue #14, rounds 3 and 4).

    despoof calibrate --model pretrained                           # report only
    despoof calibrate --model WORKDIR --write                      # and store the threshold
    despoof calibrate --model pretrained --sources stored --data-dir DIR   # round 3's sources
    config: eval.calibration = "calibration_simulator"             # as the run's last step

Why: a threshold set at the dev EER of the training world sits between the live faces and the
attacks *it was trained on*. Attacks with physics it never saw score lower than those, so on the
cross-simulator check and on real photographs the dev threshold let them through (README, "Second
round"). A threshold must instead be set where unseen physics land. This module is a third
simulator: attack physics that neither the training world (`data/synthetic/wide.py`) nor the
cross-simulator check (`tools/cross_simulator.py`) uses, and a camera neither uses, applied to
the *live records of a synthetic split* as source photographs (live crops: the same photos, jittered,
through the same unseen camera). The threshold that minimises ACER (worst attack) on the dev
split's crops is the calibrated threshold; the test split's crops (other identities, other seed)
measure it. No real photograph is used.

Media (`CAL_ATTACKS`):
  dye_sub      continuous-tone dye sublimation: three dyes with unwanted absorptions, per-dye
               misregistration of up to 0.8 px, thermal-head line banding, gamut compression;
               no screen at all (the training world's contone print has no misregistration,
               banding or dye crosstalk)
  green_noise  clustered stochastic ("green-noise", AM-FM hybrid) screening: dots in 0.6-1.6 px
               clumps placed at random (neither an AM lattice nor FM blue noise)
  crt_grille   an aperture-grille CRT: vertical phosphor stripes, scanlines with a beam whose width
               grows with brightness (bloom), barrel distortion, CRT gamma
  lcd_hstripe  a portrait panel held in landscape: horizontal R/G/B stripes (0.45-1.2 px pitch),
               6-bit drive with 2x2 frame-rate-control dither, matte anti-glare sparkle, IPS glow
Camera (`cal_camera`): lateral chromatic aberration, rolling-shutter light flicker, a BGGR mosaic
with smooth-hue-transition (colour-ratio) demosaicing, the Rec. 709 transfer curve, a saturation
change, JPEG with 4:2:2 chroma.

Sources: the split's live records (an odd number, so that every source is shown on every medium
exactly once), each framed by its central 1 / 1.25. By default (`sources="render"`, since round 4)
each is re-rendered by the generator from its own plan entry at the resolution the calibration
camera samples (crop size x SS, 384 px for a 128-px model), as a real photograph has more pixels
than the crop made from it; `sources="stored"` takes the stored records (round 3), which the
camera's 3x supersampling upsamples into a smoothness no photograph has.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import os

import jax

import numpy as np
from PIL import Image
from scipy import ndimage

from despoof_jax.data import datasets, synthetic
from despoof_jax.data.builders.synthetic_spoof import synthetic_spoof
from despoof_jax.evaluation import metrics, scores
from despoof_jax.serving import model as serving_model
from despoof_jax.tools import bona_fide
from despoof_jax.tools import cross_simulator as cs
from despoof_jax.training.workdir import as_workdir, replace_text

CAL_ATTACKS: tuple[str, ...] = ("dye_sub", "green_noise", "crt_grille", "lcd_hstripe")
SOURCE_FRAMING = 1.25   # a source record's face square is its central 1 / SOURCE_FRAMING


# ---- media -----------------------------------------------------------------------------------------

def _noise_table(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """A band-passed (difference of Gaussians at `scale` table px) noise tile, rank-mapped to
    uniform (0, 1): thresholds of a clustered stochastic screen."""
    w = rng.standard_normal((n, n)).astype(np.float32)
    band = (ndimage.gaussian_filter(w, scale * 0.5, mode="wrap")
            - ndimage.gaussian_filter(w, scale * 1.5, mode="wrap"))
    ranks = np.argsort(np.argsort(band.ravel()))
    return ((ranks + 0.5) / ranks.size).reshape(n, n).astype(np.float32)


def _tile_lookup(table: np.ndarray, mx, my, px_per_unit: float) -> np.ndarray:
    """Nearest lookup of a periodic tile at medium coordinates (tile px = 1 / px_per_unit)."""
    n = table.shape[0]
    ix = np.floor(mx * px_per_unit).astype(np.int64) % n
    iy = np.floor(my * px_per_unit).astype(np.int64) % n
    return table[iy, ix]


def _dye_sub(photo, mx, my, half, rng):
    shifts = rng.uniform(-0.8, 0.8, (3, 2))
    enc = np.stack([np.clip(cs.lookup(photo, mx + shifts[c, 0], my + shifts[c, 1], half)[..., c],
                            0, 1) for c in range(3)], -1) ** (1 / 2.2)
    lum = enc.mean(-1, keepdims=True)
    enc = lum + np.float32(rng.uniform(0.7, 0.9)) * (enc - lum)          # gamut compression
    density = (1 - enc) * np.float32(rng.uniform(1.6, 2.2))             # C, M, Y dye densities
    crosstalk = np.array([[1, 0.12, 0.05], [0.15, 1, 0.10], [0.03, 0.18, 1]], np.float32)
    paper = np.float32(rng.uniform(0.86, 0.96)) * np.array([1.0, 1.0, 0.97], np.float32)
    refl = paper * 10.0 ** (-(density @ crosstalk))
    period, amp = rng.uniform(0.8, 2.5), rng.uniform(0.02, 0.06)
    lines = rng.standard_normal(4096).astype(np.float32)
    row = np.floor(my / period).astype(np.int64) % lines.size
    band = 1 + amp * (np.sin(2 * np.pi * my / period + rng.uniform(0, 2 * np.pi)) + 0.5 * lines[row])
    return refl * band[..., None] * np.float32(rng.uniform(0.8, 1.2))


def _green_noise(photo, mx, my, half, rng):
    cover = cs.inks(cs.lookup(photo, mx, my, half))
    scale = rng.uniform(0.6, 1.6)                       # clump size in output px
    table = _noise_table(rng, 256, scale * 4)           # 4 table px per output px
    thr = [_tile_lookup(table, mx + 37.0 * i, my + 61.0 * i, 4.0) for i in range(4)]
    paper = np.float32(rng.uniform(0.85, 0.95)) * np.array([1.0, 0.99, 0.96], np.float32)
    return cs.print_inks(cover, thr, paper) * np.float32(rng.uniform(0.8, 1.2))


def _crt_grille(photo, mx, my, half, rng):
    k = rng.uniform(0.02, 0.08)                         # barrel distortion
    r2 = (mx ** 2 + my ** 2) / half ** 2
    ux, uy = mx * (1 + k * r2), my * (1 + k * r2)
    line = rng.uniform(1.4, 3.0)                        # scanline spacing, output px
    j = np.floor(uy / line)
    fy = uy / line - j
    frame = np.clip(cs.lookup(photo, ux, (j + 0.5) * line, half), 0, 1) ** np.float32(2.5 / 2.2)
    triad = rng.uniform(0.8, 2.0)
    stripe = np.floor(ux / (triad / 3)).astype(np.int64) % 3
    mask = np.stack([stripe == c for c in range(3)], -1).astype(np.float32) * 3
    lum = frame.mean(-1, keepdims=True)
    sigma = 0.12 + 0.25 * lum                            # the beam widens with brightness
    beam = np.exp(-((fy[..., None] - 0.5) ** 2) / (2 * sigma ** 2))
    rad = frame * mask * beam / np.sqrt(2 * np.pi * sigma ** 2).clip(0.3)
    bloom = ndimage.gaussian_filter(rad, (triad * cs.SS, triad * cs.SS, 0), mode="nearest")
    return (0.8 * rad + 0.2 * bloom) * np.float32(rng.uniform(0.7, 1.1)) + np.float32(rng.uniform(0, 0.02))


def _lcd_hstripe(photo, mx, my, half, rng):
    pitch = rng.uniform(0.45, 1.2)
    gx, gy = mx / pitch, my / pitch
    i, j = np.floor(gx), np.floor(gy)
    fy = gy - j
    frame = np.clip(cs.lookup(photo, (i + 0.5) * pitch, (j + 0.5) * pitch, half), 0, 1) ** (1 / 2.2)
    frc = np.array([[0.125, 0.625], [0.875, 0.375]], np.float32)   # 2x2 frame-rate-control dither
    d = frc[j.astype(np.int64) % 2, i.astype(np.int64) % 2][..., None]
    frame = (np.floor(frame * 63 + d) / 63).clip(0, 1) ** np.float32(rng.uniform(2.0, 2.4))
    aperture = rng.uniform(0.75, 0.95)
    band = np.floor(fy * 3).astype(np.int64).clip(0, 2)
    inside = (fy * 3 - band) < aperture
    pat = np.stack([(band == c) & inside for c in range(3)], -1).astype(np.float32) * 3 / aperture
    mod = rng.uniform(0.6, 0.95)
    rad = (1 - mod) * frame + mod * frame * pat
    sparkle = _noise_table(rng, 128, 1.2)
    rad = rad * (1 + rng.uniform(0.03, 0.08) * (_tile_lookup(sparkle, mx, my, 1.6)[..., None] - 0.5) * 2)
    glow = rng.uniform(0.01, 0.05) * ((mx ** 2 + my ** 2) / half ** 2)[..., None]
    return rad * np.float32(rng.uniform(0.8, 1.1)) + glow * np.array([0.9, 0.95, 1.0], np.float32)


_MEDIA = {"dye_sub": _dye_sub, "green_noise": _green_noise, "crt_grille": _crt_grille,
          "lcd_hstripe": _lcd_hstripe}


def cal_radiance(kind: str, photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The medium `kind` showing `photo` (linear [m, m, 3]) as the camera sees it, held with the
    cross simulator's tilt and glare: linear radiance [size * SS, size * SS, 3]."""
    n = size * cs.SS
    mx, my, _ = cs.medium_points(n, rng)
    rad = _MEDIA[kind](photo, mx, my, size / 2 * 1.15, rng)
    return cs.add_glare(rad.astype(np.float32), rng, strength=0.2)


# ---- the calibration camera ----------------------------------------------------------------------------

def _rec709(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return np.where(x < 0.018, 4.5 * x, 1.099 * x ** 0.45 - 0.099)


_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32) / 4
_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 4


def demosaic_hue(m: np.ndarray, ch: np.ndarray) -> np.ndarray:
    """Smooth-hue-transition demosaicing (Cok): green bilinear, then red and blue as green times
    the bilinearly interpolated ratio R/G (B/G) of their own sites. `ch`: the colour of each
    photosite (0 R, 1 G, 2 B)."""
    g = ndimage.convolve(np.where(ch == 1, m, 0), _K_G, mode="mirror")
    g = np.where(ch == 1, m, g)
    out = [None, g, None]
    for c in (0, 2):
        ratio = ndimage.convolve(np.where(ch == c, m / (g + 1e-3), 0), _K_RB, mode="mirror")
        out[c] = np.where(ch == c, m, g * ratio)
    return np.stack(out, -1).astype(np.float32)


def cal_camera(scene: np.ndarray, rng: np.random.Generator, exposure: float) -> np.ndarray:
    """Linear scene [S*SS, S*SS, 3] -> uint8 [S, S, 3]: lateral chromatic aberration, defocus,
    auto exposure, rolling-shutter flicker, BGGR mosaic + noise, smooth-hue-transition
    demosaicing, Rec. 709 curve, saturation, JPEG 4:2:2."""
    big = scene.shape[0]
    c = (np.arange(big, dtype=np.float32) - (big - 1) / 2)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    chans = []
    for ch, mag in enumerate((1 + rng.uniform(0.002, 0.006), 1.0, 1 - rng.uniform(0.002, 0.006))):
        chans.append(scene[..., ch] if mag == 1.0 else ndimage.map_coordinates(
            scene[..., ch], [yy * mag + (big - 1) / 2, xx * mag + (big - 1) / 2], order=1, mode="nearest"))
    img = np.stack(chans, -1)
    sig = rng.uniform(0.35, 0.7) * cs.SS
    img = ndimage.gaussian_filter(img, (sig, sig, 0), truncate=2.0, mode="nearest")
    n = big // cs.SS
    img = img.reshape(n, cs.SS, n, cs.SS, 3).mean((1, 3))
    img = img * np.float32(exposure / (img[n // 4: 3 * n // 4, n // 4: 3 * n // 4].mean() + 1e-6))
    rows = np.arange(n, dtype=np.float32)[:, None, None]
    img = img * (1 + rng.uniform(0, 0.03) * np.sin(2 * np.pi * rows / rng.uniform(20, 80)
                                                   + rng.uniform(0, 2 * np.pi)))
    # BGGR mosaic (B G / G R) + noise, smooth-hue-transition demosaicing.
    yy, xx = np.mgrid[0:n, 0:n]
    ch = np.where((yy % 2 == 0) & (xx % 2 == 0), 2, np.where((yy % 2 == 1) & (xx % 2 == 1), 0, 1))
    m = np.take_along_axis(img, ch[..., None], -1)[..., 0]
    m = m + np.sqrt(rng.uniform(0.0005, 0.002) * np.clip(m, 0, None) + 0.003 ** 2) * rng.standard_normal(m.shape)
    full = demosaic_hue(np.clip(m, 0, None).astype(np.float32), ch)
    y = _rec709(full)
    lum = y.mean(-1, keepdims=True)
    y = lum + rng.uniform(0.85, 1.2) * (y - lum)
    out = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(60, 93)), subsampling=1)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


CALIBRATION = cs.Physics(CAL_ATTACKS, cal_radiance, cal_camera)


# ---- sources, threshold, report -------------------------------------------------------------------

SOURCES = ("render", "stored")


def _odd_live(live: list, where: str) -> list:
    """The live record indices, less the last if there is an even number of them (see the module
    docstring); ValueError below 3."""
    if len(live) < 3:
        raise ValueError(f"{where}: {len(live)} live records; need at least 3")
    return live[:-1] if len(live) % 2 == 0 else live


def rendered_live(builder_config: str, split: str, px: int,
                  num_workers: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The live records of `split` (plan order, an odd number) re-rendered at `px` x `px` from
    their plan entries: [(name, uint8 image)]. Deterministic; the worker count changes nothing but
    the time."""
    config = synthetic_spoof.as_config(builder_config)
    plan = synthetic_spoof.example_plan(config, split)
    live = _odd_live([i for i, e in enumerate(plan) if e.species == 0], f"{config.name}/{split}")
    world = {"world": config.world} if config.world != "base" else {}
    jobs = [dict(seed=config.seed, size=px, difficulty=config.difficulty, **world,
                 **plan[i]._asdict()) for i in live]
    workers = max(1, min(num_workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        images = [synthetic.render_image(j) for j in jobs]
    else:   # "spawn": the parent runs JAX's threads (as the builder does)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            images = pool.map(synthetic.render_image, jobs,
                              chunksize=max(1, len(jobs) // (4 * workers)))
    return [(f"{split}/{i}@{px}", im) for i, im in zip(live, images)]


def stored_live(builder_config: str, data_dir, split: str) -> list[tuple[str, np.ndarray]]:
    """The stored live records of `split` (record order, an odd number): [(name, uint8 image)]."""
    meta = synthetic_spoof.load_metadata(builder_config, data_dir, split)
    live = _odd_live(list(np.flatnonzero(np.asarray(meta["species"]) == 0)),
                     f"{builder_config}/{split}")
    src = synthetic_spoof.load_source(builder_config, data_dir, split)
    return [(f"{split}/{int(i)}", np.asarray(src[int(i)]["image"])) for i in live]


def sources(builder_config: str, data_dir, split: str, *, how: str = "render",
            size: int | None = None) -> list[cs.Face]:
    """The live records of `split` as source photographs (an odd number of them: see the module
    docstring), framed by their central 1 / SOURCE_FRAMING. how="render": re-rendered at
    `size` x SS px (`size`: the crop size, default the config's); "stored": the records."""
    if check_sources(how) == "render":
        px = (size or synthetic_spoof.as_config(builder_config).size) * cs.SS
        images = rendered_live(builder_config, split, px)
    else:
        images = stored_live(builder_config, data_dir, split)
    out = []
    for name, img in images:
        s = img.shape[0]
        out.append(cs.Face(name, (img.astype(np.float32) / 255.0) ** 2.2,
                           s / 2, s / 2, s / SOURCE_FRAMING, "record"))
    return out


def min_acer_threshold(score: np.ndarray, species: np.ndarray) -> float:
    """The threshold minimising ACER = (worst attack's APCER + BPCER) / 2 (decision: attack iff
    score >= threshold); among equally good thresholds, the middle one."""
    score, species = cs.checked_scores(score, species, what="calibration")
    u = np.unique(score)
    # Midpoints that stay between their neighbours in float32, where the model decides.
    cand = np.concatenate([[u[0] - 1.0], np.atleast_1d(metrics.threshold_between(u[:-1], u[1:])),
                           [u[-1] + 1.0]])
    live = np.sort(score[species == 0])
    bpcer = 1 - np.searchsorted(live, cand, side="left") / live.size
    apcer = np.max([np.searchsorted(np.sort(score[species == k]), cand, side="left") / (species == k).sum()
                    for k in np.unique(species[species > 0])], axis=0)
    acer = (apcer + bpcer) / 2
    best = np.flatnonzero(acer <= acer.min() + 1e-12)
    return float(cand[best[len(best) // 2]])


def crops_for(builder_config: str, data_dir, split: str, size: int, seed: int, *,
              how: str = "render"):
    """Calibration crops of `split`: every source once live and once on every medium."""
    faces = sources(builder_config, data_dir, split, how=how, size=size)
    n = len(faces)
    return cs.make_crops(faces, size, n, n * len(CAL_ATTACKS), seed, physics=CALIBRATION)


def _fusion_scorer(model_path: str, fusions: tuple):
    """-> (image_size, dev threshold, the model's own fusion, crops -> {fusion: scores [N]}). A
    de-spoofing model is run once per crop set and its components fused each way; a baseline has
    its one score."""
    base = cs.scorer(model_path)
    if not fusions or base.fusion not in scores.FUSIONS:
        return base.image_size, base.threshold, base.fusion, lambda crops: {
            base.fusion: base.score(crops)}
    model = serving_model.load(model_path)

    def score(crops):
        comps = {f"score_{c}": v for c, v in model.score(list(crops)).components.items()}
        return {how: np.asarray(scores.fuse(comps, model.fusion_stats, how), np.float64)
                for how in fusions}
    return model.image_size, model.threshold, model.fusion, score


def calibrate(model_path: str, data_dir, builder_config: str = "wide2_s128", *,
              draws: int = 1000, fusions: tuple = (), sources_from: str = "render") -> dict:
    """Threshold on the dev split's calibration crops (seed 0), measured on the test split's
    (seed 1) -> a JSON-able report (`fusion`, `threshold`, `dev`, `test`:
    cross_simulator.summarise). `fusions` (de-spoofing models): the decision scores to choose
    among, each at its own calibrated threshold, by dev ACER (ties: the first); () = the model's own.
    `sources_from`: "render" (the live records re-rendered at the camera's sampling resolution;
    `data_dir` is not read) or "stored" (the records in `data_dir`), see `sources`."""
    check_sources(sources_from)
    size, dev_threshold, own, score_fn = _fusion_scorer(model_path, check_fusions(fusions))
    report = {"model": model_path, "dev_fusion": own, "builder_config": builder_config,
              "dev_threshold": dev_threshold, "physics": list(CAL_ATTACKS),
              "sources": sources_from}
    crops = {split: crops_for(builder_config, data_dir, split, size, seed, how=sources_from)
             for split, seed in (("dev", 0), ("test", 1))}
    fused = {split: score_fn(c[0]) for split, c in crops.items()}
    per_fusion = {}
    for how in fused["dev"]:
        scored = {split: (fused[split][how],) + tuple(c[1:]) for split, c in crops.items()}
        threshold = min_acer_threshold(*scored["dev"][:2])
        dev_acer = float(metrics.acer(scored["dev"][0], (scored["dev"][1] > 0).astype(np.int64),
                                      scored["dev"][1], threshold))
        per_fusion[how] = (dev_acer, threshold, scored)
    how = min(per_fusion, key=lambda f: per_fusion[f][0])   # first of equals: dict order
    _, threshold, scored = per_fusion[how]
    report.update(fusion=how, threshold=threshold,
                  candidates={f: {"dev_acer": v[0], "threshold": v[1]} for f, v in per_fusion.items()})
    for split, (score, species, photo) in scored.items():
        report[split] = cs.summarise(score, species, photo, threshold, draws=draws,
                                     attacks=CAL_ATTACKS)
        if how == own:
            labels = (species > 0).astype(np.int64)
            report[split]["acer_at_dev_threshold"] = float(
                metrics.acer(score, labels, species, dev_threshold))
    return report


# ---- storing the threshold -------------------------------------------------------------------------

METHOD = "calibration_simulator"


def check_config(config) -> None:
    """Raises ValueError, before any training, when `eval.calibration` cannot apply."""
    how = config.eval.calibration
    if not how:
        return
    if how != METHOD:
        raise ValueError(f"eval.calibration={how!r}; expected '' or {METHOD!r}")
    parse_fusions(config.eval.calibration_fusions)
    check_sources(_sources_of(config))
    if config.method != "despoof" or config.data.dataset != "synthetic_spoof":
        raise ValueError("eval.calibration applies to the de-spoofing method on a synthetic_spoof "
                         f"dataset (its live records are the sources); got method "
                         f"{config.method!r}, dataset {config.data.dataset!r}")


def _sources_of(config) -> str:
    """`eval.calibration_sources`; a config written before it existed calibrated on the stored
    records."""
    return config.eval.get("calibration_sources", "stored")


def check_sources(how: str) -> str:
    """`how` if it names a way to make the sources (SOURCES), else ValueError."""
    if how not in SOURCES:
        raise ValueError(f"calibration sources {how!r}; expected one of {SOURCES}")
    return how


def check_fusions(fusions) -> tuple:
    """The fusions as a tuple; ValueError naming any that `scores.FUSIONS` does not have."""
    out = tuple(fusions)
    bad = set(out) - set(scores.FUSIONS)
    if bad:
        raise ValueError(f"calibration fusions {sorted(bad)}; expected some of {scores.FUSIONS}")
    return out


def parse_fusions(text: str) -> tuple:
    """"map,noise" -> ("map", "noise"); "" -> () (the model's own decision score)."""
    return check_fusions(f.strip() for f in text.split(",") if f.strip())


def store(report: dict, model_json) -> dict:
    """Makes the calibrated threshold the model's decision threshold in `model_json` (a path);
    the dev threshold stays as `dev_threshold`. Returns the new model.json content."""
    info = json.loads(model_json.read_text())
    if report["fusion"] not in scores.FUSIONS:   # a baseline's score ("cnn", ...)
        raise ValueError(f"{model_json}: only a de-spoofing model's threshold can be stored; the "
                         f"calibration scored {report['fusion']!r} (run it without --write)")
    info.setdefault("dev_threshold", info["threshold"])
    info.setdefault("dev_fusion", info["fusion"])
    info.update(fusion=report["fusion"], threshold=report["threshold"], criterion=METHOD,
                calibration={
        "builder_config": report["builder_config"], "physics": report["physics"],
        "sources": report.get("sources", "stored"),
        "dev_acer": report["dev"]["acer"]["value"], "test_acer": report["test"]["acer"]["value"],
        "test_acer_ci95": report["test"]["acer"]["ci95"], "test_auc": report["test"]["auc"]["value"],
        "n": report["test"]["n"]})
    replace_text(model_json, json.dumps(info, indent=1) + "\n")   # all at once (bona_fide)
    return info


def calibrate_workdir(config, workdir) -> dict:
    """`eval.calibration`: calibrate the evaluated workdir's model and store the threshold
    (process 0; the report also goes to eval/calibration.json)."""
    wd = as_workdir(workdir)
    if jax.process_index() != 0:
        return {}
    report = calibrate(str(wd.root), datasets.data_dir(config.data),
                       config.eval.calibration_data or config.data.builder_config,
                       fusions=parse_fusions(config.eval.calibration_fusions),
                       sources_from=_sources_of(config))
    (wd.model_json.parent / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    store(report, wd.model_json)
    return report


def main(args) -> int:
    """`despoof calibrate` (its options are defined in cli.py): prints the report; --write stores
    the threshold in the model's model.json."""
    given = [flag for flag, on in (("--out", args.out), ("--bpcer", args.bpcer != 0.05),
                                   ("--every", args.every != 1),
                                   ("--allow-upsample", args.allow_upsample),
                                   ("--allow-gray", args.allow_gray)) if on]
    if given:   # they belong to --bona-fide: ignoring them would run the simulator silently
        raise ValueError(f"{', '.join(given)}: options of --bona-fide (a threshold from your own "
                         "bona fide captures); the simulator calibration does not use them")
    if args.sources == "stored" and not args.data_dir:
        raise ValueError("despoof calibrate --sources stored needs --data-dir")
    report = calibrate(args.model, args.data_dir, args.builder_config, draws=args.draws,
                       fusions=parse_fusions(args.fusions), sources_from=args.sources)
    bona_fide.print_report(report, args.json)
    if args.write:
        store(report, serving_model.model_json_path(args.model))
    return 0
