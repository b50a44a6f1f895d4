"""TFDS builder `synthetic_spoof`: the synthetic face anti-spoofing world, stored as ArrayRecord.

Every record is rendered by the procedural generator `despoof_jax.data.synthetic.make_example`
(deterministic in its arguments), so a config fixes the dataset bit for bit: building the same config
twice, in any number of worker processes, writes the same records in the same order.

Layout of one split (the "plan", `example_plan`): every identity of the split is recorded as every
species (live + 4 spoof media), each (identity, species) on `devices_per_cell` of the 6 capture
devices, `videos` videos per (identity, species, device) and `frames` frames per video. Identities
are numbered globally (train first, then dev, then test, then any extra training identities), so
they never cross splits, as in Oulu-NPU. The devices of a cell rotate with the identity and the
species, and each config checks that every (species, device) pair occurs in every split, so that
the `unseen_device` protocol (leave one device out, Oulu P3) has live and spoof faces of every
device in every split.

Records (numpy, as read by `builder.as_data_source(split)`; no TensorFlow anywhere):
    image:    uint8 [S, S, 3] RGB in [0, 255]
    live_reference: uint8 [S, S, 3], the same frame through an ideal medium (`make_example`), so
                        image - live_reference is the true spoof noise N* of Eq. 1; == image for live
                        records. Ground truth for evaluation only (`despoof_jax.evaluation.decomposition`).
    depth:    uint8 [S, S, 1] face depth in [0, 255] (0 = background/far). The *face* depth, also for
                        spoof faces: the paper's DS Net asks DQ Net to see the face shape in the reconstructed
                        live image of a spoof input (Sec. 3.3), so the zero map that supervises DQ Net on spoof
                        inputs is formed in the loss, not stored here.
    label:    int, 0 live / 1 spoof
    species:  int, index into `SPECIES` (0 = live)
    device, identity, video, frame: int32; `video` is unique over the whole dataset.

Images are stored as zlib-compressed uint8 tensors rather than `tfds.features.Image`: TFDS decodes
PNG/JPEG features with TensorFlow, which this project does not install.

Build: `SyntheticSpoof(config="s64_small", data_dir=d).download_and_prepare(file_format="array_record")`
or, simpler, `load_source("s64_small", d, "train")`, which builds on first use.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
from typing import Iterator, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from despoof_jax.data import synthetic
from despoof_jax.data.builders import metadata_table

SPLITS = ("train", "dev", "test")

# Metadata columns saved per split (`load_metadata`): everything protocols filter on, none of the
# pixels, so a protocol selects records without decoding a single image.
METADATA_KEYS = ("label", "species", "device", "identity", "video", "frame")
# Wide-world configs (`world="wide"`, "wide2", "wide3" or "wide4") add the physics family of each stage (`synthetic.WIDE_FIELDS`:
# print_family, display_layout, camera_pipeline, photo_source, scene_content; -1 where a record
# has no such stage), which the unseen-physics protocols filter on. Base configs keep their records and
# columns, byte for byte.
WIDE_METADATA_KEYS = METADATA_KEYS + synthetic.WIDE_FIELDS


@dataclasses.dataclass(eq=False)
class SyntheticSpoofConfig(tfds.core.BuilderConfig):
    """One synthetic dataset: image size, split sizes and generator settings.

    Records per split = identities x len(SPECIES) x devices_per_cell x videos x frames.

    Attributes:
        size: image side S in pixels; a multiple of 8 (the depth/map labels are S/8 wide).
        train_identities, dev_identities, test_identities: identities per split (disjoint).
        extra_train_identities: more training identities, numbered after the test split's, so
            that a config with them has the train records of the config without them (first),
            and the same dev and test records, byte for byte: a bigger training set compared
            on the same evaluation records. `identities("train")` counts them.
        test_first_identity: the test split's first global identity number; -1 (default): right
            after dev's. A larger number skips identities, so that a build's test split holds
            identities no other config's split uses (an evaluation build of fresh identities,
            `wide2_s128_f60`); train's extra identities still follow the test split's.
        devices_per_cell: capture devices recorded per (identity, species), 1..N_CAPTURE_DEVICES.
        videos: videos per (identity, species, device).
        frames: frames per video.
        difficulty: generator difficulty (strength of the spoof cues' disguise), > 0.
        seed: generator seed; the whole dataset is a function of the config.
        world: "base" (the base world), "wide" (`synthetic.wide`: randomised physics families,
            recorded per example in the WIDE_FIELDS columns), "wide2" (wide, plus photo sources
            and content scenes) or "wide3" (wide2's sessions with area-sampled display lattices
            and print screens and refresh banding along the camera's rows) or "wide4" (wide2's
            physics captured by a sensor 1-3x finer than the crop, then shrunk to it) or "wide5"
            (wide2 with hair that follows the head: `synthetic.generator.WORLDS`).
    """

    size: int = 64
    train_identities: int = 4
    dev_identities: int = 4
    test_identities: int = 4
    extra_train_identities: int = 0
    test_first_identity: int = -1
    devices_per_cell: int = 3
    videos: int = 1
    frames: int = 1
    difficulty: float = 1.0
    seed: int = 0
    world: str = "base"

    def __post_init__(self):
        if self.world not in synthetic.WORLDS:
            raise ValueError(f"SyntheticSpoofConfig {self.name!r}: world must be one of "
                             f"{synthetic.WORLDS}, got {self.world!r}.")
        n_dev = synthetic.N_CAPTURE_DEVICES
        if self.size % 8:
            raise ValueError(f"SyntheticSpoofConfig {self.name!r}: size must be a multiple of 8 "
                             f"(labels are size/8 wide), got {self.size}.")
        if not 1 <= self.devices_per_cell <= n_dev:
            raise ValueError(f"SyntheticSpoofConfig {self.name!r}: devices_per_cell must be in "
                             f"[1, {n_dev}], got {self.devices_per_cell}.")
        if self.extra_train_identities < 0:
            raise ValueError(f"SyntheticSpoofConfig {self.name!r}: extra_train_identities must "
                             f"be >= 0, got {self.extra_train_identities}.")
        after_dev = self.train_identities + self.dev_identities
        if self.test_first_identity != -1 and self.test_first_identity < after_dev:
            raise ValueError(f"SyntheticSpoofConfig {self.name!r}: test_first_identity must be -1 "
                             f"or >= {after_dev} (train and dev come first), got "
                             f"{self.test_first_identity}.")
        for split in SPLITS:
            n = self.identities(split)
            # Device of (identity j, species s, k) = (j + s + k) % n_dev: a split covers every device
            # for every species iff its identities and cell devices together span n_dev rotations.
            if n < 1 or n + self.devices_per_cell - 1 < n_dev:
                raise ValueError(
                    f"SyntheticSpoofConfig {self.name!r}: split {split!r} has {n} identities x "
                    f"{self.devices_per_cell} devices per cell, which cannot show every species "
                    f"on all {n_dev} devices; need identities + devices_per_cell - 1 >= {n_dev}.")
        if self.videos < 1 or self.frames < 1:
            raise ValueError(f"SyntheticSpoofConfig {self.name!r}: videos and frames must be >= 1.")
        if not self.difficulty > 0:   # the generator divides by it: refused here, not in a worker
            raise ValueError(f"SyntheticSpoofConfig {self.name!r}: difficulty must be > 0, got "
                             f"{self.difficulty}.")

    @property
    def metadata_keys(self) -> tuple[str, ...]:
        """The metadata columns of this config's records (`load_metadata`)."""
        return WIDE_METADATA_KEYS if self.world != "base" else METADATA_KEYS

    def identities(self, split: str) -> int:
        """Number of identities in `split` (train's extra identities included)."""
        extra = self.extra_train_identities if split == "train" else 0
        return self._planned(split) + extra

    def _planned(self, split: str) -> int:
        return {"train": self.train_identities, "dev": self.dev_identities,
                "test": self.test_identities}[split]

    def _first(self, split: str) -> int:
        if split == "test" and self.test_first_identity != -1:
            return self.test_first_identity
        return sum(self._planned(s) for s in SPLITS[:SPLITS.index(split)])

    def identity_ids(self, split: str) -> list[int]:
        """The global identity numbers of `split`, in plan order: train [0, n_train), dev after,
        test after dev (or from `test_first_identity`), then train's extra identities after
        test."""
        first = self._first(split)
        ids = list(range(first, first + self._planned(split)))
        if split == "train":
            end = self._first("test") + self.test_identities
            ids += range(end, end + self.extra_train_identities)
        return ids

    def num_examples(self, split: str) -> int:
        """Records in `split` (the plan's length)."""
        return (self.identities(split) * len(synthetic.SPECIES) * self.devices_per_cell
                * self.videos * self.frames)


def _config(name, size, ids, devices_per_cell, videos, frames, description, world="base",
            extra_train=0, test_first=-1):
    return SyntheticSpoofConfig(
        name=name, size=size, train_identities=ids[0], dev_identities=ids[1],
        test_identities=ids[2], extra_train_identities=extra_train, test_first_identity=test_first,
        devices_per_cell=devices_per_cell, videos=videos, frames=frames,
        description=description, world=world)


def _world_builds(world):
    """A world's smoke, 128 px and 5x-test builds, on the plans of wide2's (`wide2_smoke`,
    `wide2_s128`, `wide2_s128_t60`): a record differs from its wide2 twin only by the world."""
    name = world.capitalize()
    return (
        _config(f"{world}_smoke", 64, (4, 4, 4), 3, 1, 1,
                f"{name} world, 64 px, 4/4/4 identities: tests.", world=world),
        _config(f"{world}_s128", 128, (40, 12, 12), 3, 2, 2,
                f"{name} world, 128 px, 40/12/12 identities, 2 videos x 2 frames.", world=world),
        _config(f"{world}_s128_t60", 128, (40, 12, 60), 3, 2, 2,
                f"{name} world, 128 px, 40/12/60 identities, 2 videos x 2 frames: {world}_s128 "
                "with a 5x test split.", world=world))


CONFIGS = (
    # Test-suite size (also the end-to-end learning test): 60 records per split, seconds to build.
    _config("s64_small", 64, (4, 4, 4), 3, 1, 1, "64 px, 4/4/4 identities, 1 frame: unit tests."),
    # The README's main job on a 2-core CPU (configs/quickstart.py): 720/900/1800 records. The
    # test split has 360 bona fide and 360 images per attack species (60 identities), so one
    # error moves BPCER or a species' APCER by 0.28 points, and the bootstrap over identities
    # has 60 groups; dev (30 identities) sets the threshold.
    _config("s64_quick", 64, (24, 30, 60), 3, 1, 2, "64 px, 24/30/60 identities, 2 frames."),
    # Longer CPU runs: 2400/1800/2400 records.
    _config("s64", 64, (20, 15, 20), 3, 2, 4, "64 px, 20/15/20 identities, 2 videos x 4 frames."),
    _config("s128", 128, (20, 15, 20), 3, 2, 4, "128 px, 20/15/20 identities, 2 videos x 4 frames."),
    # The paper's input size (256x256, Sec. 4.1): 1200/900/1200 records.
    _config("s256", 256, (20, 15, 20), 3, 2, 2, "256 px, 20/15/20 identities, 2 videos x 2 frames."),
    # The wide world (issue #14): randomised print screening, display layouts, camera pipelines,
    # skin texture and natural backgrounds (`synthetic.wide`). Test-suite size: 60 per split.
    _config("wide_smoke", 64, (4, 4, 4), 3, 1, 1, "Wide world, 64 px, 4/4/4 identities: tests.",
            world="wide"),
    # Protocol runs on 2 CPU cores: 1200/720/720 records.
    _config("wide_s64", 64, (40, 24, 24), 3, 2, 1, "Wide world, 64 px, 40/24/24 identities, "
            "2 videos.", world="wide"),
    # The packaged pretrained model (configs/pretrained.py): 2400/720/720 records.
    _config("wide_s128", 128, (40, 12, 12), 3, 2, 2, "Wide world, 128 px, 40/12/12 identities, "
            "2 videos x 2 frames.", world="wide"),
    # The wide world plus photo sources and content scenes (world "wide2"): the packaged
    # pretrained model's data since builder version 1.3.0 (configs/pretrained.py).
    _config("wide2_smoke", 64, (4, 4, 4), 3, 1, 1, "Wide2 world, 64 px, 4/4/4 identities: tests.",
            world="wide2"),
    _config("wide2_s128", 128, (40, 12, 12), 3, 2, 2, "Wide2 world, 128 px, 40/12/12 identities, "
            "2 videos x 2 frames.", world="wide2"),
    # wide2_s128 with 60 test identities (an evaluation build, 2026-12-04): the records of a split
    # depend only on the config's seed, size, world and the plan, and the plan places test after
    # train and dev, so train and dev are wide2_s128's byte for byte (a model trained on either
    # gets the same dev statistics and threshold) and the first 720 test records are its test
    # split. 5x the test identities: 994 direct records (200 bona fide) instead of 214 (34).
    _config("wide2_s128_t60", 128, (40, 12, 60), 3, 2, 2, "Wide2 world, 128 px, 40/12/60 "
            "identities, 2 videos x 2 frames: wide2_s128 with a 5x test split.", world="wide2"),
    # wide2 with the 2026-12-04 physics fix (world "wide3"): the same sessions, the display
    # lattices and print screens area-sampled (no fake moire at fine pitches), the refresh banding
    # along the camera's rows. Added under version 1.3.0: every earlier config is unchanged.
    _config("wide3_smoke", 64, (4, 4, 4), 3, 1, 1, "Wide3 world, 64 px, 4/4/4 identities: tests.",
            world="wide3"),
    _config("wide3_s128", 128, (40, 12, 12), 3, 2, 2, "Wide3 world, 128 px, 40/12/12 identities, "
            "2 videos x 2 frames.", world="wide3"),
    # wide2's physics seen by a sensor 1-3x finer than the crop, then shrunk by the resize a
    # user's crop gets (world "wide4", 2026-12-04; README "Capture resolution"). The same plans
    # as wide2_s128 / wide2_s128_t60; wide4_s128_t60's train and dev are wide4_s128's byte for
    # byte, as wide2's are. Added under version 1.3.0: every earlier config is unchanged.
    *_world_builds("wide4"),
    # The t60 builds with 4x the training identities (2026-12-05): 120 more, numbered after the
    # test split's, so train starts with the t60 build's 2400 records and dev and test are its
    # records byte for byte (`extra_train_identities`): 9600/720/3600 records. Added under
    # version 1.3.0: every earlier config is unchanged.
    _config("wide2_s128_t60_x4", 128, (40, 12, 60), 3, 2, 2, "Wide2 world, 128 px, 40+120/12/60 "
            "identities, 2 videos x 2 frames: wide2_s128_t60 with 4x the training identities.",
            world="wide2", extra_train=120),
    _config("wide4_s128_t60_x4", 128, (40, 12, 60), 3, 2, 2, "Wide4 world, 128 px, 40+120/12/60 "
            "identities, 2 videos x 2 frames: wide4_s128_t60 with 4x the training identities.",
            world="wide4", extra_train=120),
    # Fresh test identities (2026-12-05): 60 test identities numbered 232-291, after every
    # identity the configs above use (the x4 builds' extra training identities end at 231), so
    # that a rule written after a model's t60 figures were seen is decided on sessions nobody has
    # looked at. Evaluation builds: train and dev are the minimum a split may hold (4 identities)
    # and are not wide2_s128's; score them with a model's own threshold. 240/240/3600 records.
    # Fresh again (2026-12-05, session 9): the g60 builds, identities 292-351, for a rule written
    # after the f60 builds' figures were seen (README, "`c17_mix` ... registered").
    # And again (2026-12-05, session 10): the h60 builds, identities 352-411, for Rule N (README,
    # "Native-resolution tiles ... registered"), which renders wide4_s128_h60's test plan at the
    # sessions' capture sizes (`synthetic.capture_example`).
    # And again (2026-12-05, session 15): the i60 builds, identities 412-471, for Rule F (README,
    # "A threshold set on face sessions ... registered"), written after the h60 builds' figures;
    # and the j60 builds, identities 472-531, for Rule J (`c18_x4_vq`), after Rule F's figures,
    # and the k60 builds, identities 532-591, for Rule K (a GPU candidate), registered with it.
    *[_config(f"{world}_s128_{tag}", 128, (4, 4, 60), 3, 2, 2, f"{world.capitalize()} world, 128 "
              f"px, 60 fresh test identities ({first}-{first + 59}), 2 videos x 2 frames: an "
              "evaluation build.", world=world, test_first=first)
      for tag, first in (("f60", 232), ("g60", 292), ("h60", 352), ("i60", 412),
                          ("j60", 472), ("k60", 532))
      for world in ("wide2", "wide4")],
    # wide2 with hair that follows the head (world "wide5", 2026-12-06; README, "Which direct
    # live faces candidate 8 refuses"): the same plans as wide2's builds, so a record differs from
    # the wide2 record of the same plan entry only in the identity's hair (and brows). Added under
    # version 1.3.0: every earlier config is unchanged.
    *_world_builds("wide5"),
    # wide2_s128_i60's twin in wide5 (identities 412-471, spent on Rule F): the same sessions with
    # the other hair, to measure what the hair alone does to a model's scores, paired record by
    # record. A diagnostic build, never a rule's.
    _config("wide5_s128_i60", 128, (4, 4, 60), 3, 2, 2, "Wide5 world, 128 px, wide2_s128_i60's "
            "sessions (test identities 412-471) with hair that follows the head: a diagnostic "
            "build.", world="wide5", test_first=412),
    # Fresh test identities 652-711 in wide2 and wide5 (2026-12-06), after every identity above
    # (wide_s128_l60's end at 651), for a rule written after this session's figures.
    *[_config(f"{world}_s128_m60", 128, (4, 4, 60), 3, 2, 2, f"{world.capitalize()} world, 128 "
              "px, 60 fresh test identities (652-711), 2 videos x 2 frames: an evaluation build.",
              world=world, test_first=652) for world in ("wide2", "wide5")],
    # wide2's direct sessions alone (2026-12-06): world "wide" is wide2 without photo sources and
    # content scenes, each of which wide2 draws from a stream of its own, so a wide2 session that
    # draws neither is the wide session byte for byte (tests/data/test_wide.py), and a wide build
    # holds sessions distributed as wide2's direct ones. 60 fresh identities (592-651) give 3600
    # direct records (720 bona fide) where a wide2 60-identity build has ~990 (~200), for a rule's
    # direct part with narrower intervals (README, "Direct sessions, measured on their own").
    _config("wide_s128_l60", 128, (4, 4, 60), 3, 2, 2, "Wide world, 128 px, 60 fresh test "
            "identities (592-651), 2 videos x 2 frames: wide2's direct sessions alone, an "
            "evaluation build.", world="wide", test_first=592),
    # Rule S's two splits (2026-12-06, session 21; README, "A third draw, started"): 60 fresh
    # wide2 identities (712-771) and the direct sessions of 60 more (772-831), after every
    # identity above, registered before any model scored them. Added under version 1.3.0: every
    # earlier config is unchanged.
    _config("wide2_s128_n60", 128, (4, 4, 60), 3, 2, 2, "Wide2 world, 128 px, 60 fresh test "
            "identities (712-771), 2 videos x 2 frames: an evaluation build.", world="wide2",
            test_first=712),
    _config("wide_s128_o60", 128, (4, 4, 60), 3, 2, 2, "Wide world, 128 px, 60 fresh test "
            "identities (772-831), 2 videos x 2 frames: wide2's direct sessions alone, an "
            "evaluation build.", world="wide", test_first=772),
)


class PlanEntry(NamedTuple):
    """Arguments of one record's `make_example` call (all but seed/size/difficulty)."""
    identity: int
    species: int
    device: int
    video: int
    frame: int


def example_plan(config: SyntheticSpoofConfig, split: str) -> list[PlanEntry]:
    """The records of `split` in storage order (the builder disables TFDS shuffling).

    Identities are global: train is [0, n_train), dev follows, then test, then train's extra
    identities (`SyntheticSpoofConfig.identity_ids`). Video ids are unique over the dataset:
    ((identity * n_species + species) * n_devices + device) * videos + v.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    n_species, n_dev = len(synthetic.SPECIES), synthetic.N_CAPTURE_DEVICES
    plan = []
    for j, identity in enumerate(config.identity_ids(split)):
        for species in range(n_species):
            for k in range(config.devices_per_cell):
                device = (j + species + k) % n_dev
                for v in range(config.videos):
                    video = ((identity * n_species + species) * n_dev + device) * config.videos + v
                    for frame in range(config.frames):
                        plan.append(PlanEntry(identity, species, device, video, frame))
    return plan


def _render(job: tuple[SyntheticSpoofConfig, PlanEntry]) -> dict:
    """One plan entry -> one TFDS example dict. Module level so that worker processes can run it."""
    config, entry = job
    kwargs = {"world": config.world} if config.world != "base" else {}
    ex = synthetic.make_example(seed=config.seed, size=config.size, difficulty=config.difficulty,
                                **kwargs, **entry._asdict())
    s = config.size
    image = np.asarray(ex["image"])
    reference = np.asarray(ex["live_reference"])
    depth = np.asarray(ex["depth"])
    for name, a in (("image", image), ("live_reference", reference)):
        if a.shape != (s, s, 3) or a.dtype != np.uint8:
            raise ValueError(f"make_example returned {name} {a.dtype}{a.shape}; "
                             f"expected uint8({s}, {s}, 3).")
    if depth.shape[:2] != (s, s) or depth.dtype != np.uint8:
        raise ValueError(f"make_example returned depth {depth.dtype}{depth.shape}; "
                         f"expected uint8({s}, {s}).")
    species = int(ex["species"])
    label = int(ex["label"])
    if label != int(species != 0):  # species 0 is live: the two labels must agree.
        raise ValueError(f"make_example returned label {label} for species {species}.")
    record = {
        "image": image,
        "live_reference": reference,
        "depth": depth.reshape(s, s, 1),
        "label": label,
        "species": species,
        "device": np.int32(ex["device"]),
        "identity": np.int32(ex["identity"]),
        "video": np.int32(ex["video"]),
        "frame": np.int32(ex["frame"]),
    }
    if config.world != "base":
        record.update({k: np.int32(ex[k]) for k in synthetic.WIDE_FIELDS})
    return record


class SyntheticSpoof(tfds.core.GeneratorBasedBuilder):
    """Synthetic live/spoof faces with face depth; see the module docstring for the layout."""

    # Adding configs does not change a config's records, so wide3 came without a bump: a bump
    # would send readers of existing 1.3.0 builds (e.g. a resumed run) to a build that isn't there.
    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Records gain `live_reference` (the frame through an ideal medium: ground truth of "
                 "the spoof noise, image - live_reference). Other fields unchanged, byte for byte.",
        "1.2.0": "s64_quick: 30 dev and 60 test identities (was 12 and 12), so that one error moves "
                 "a test rate by at most 0.3 points.",
        "1.3.0": "World `wide2` (configs wide2_smoke, wide2_s128): the wide world plus photo sources "
                 "(`synthetic.wide.PHOTO_SOURCES`: in 60 % of sessions the live scene and the "
                 "attacker's photo are photographs by a source camera) and content scenes "
                 "(`synthetic.wide.CONTENT_IMAGES`: 30 % of sessions show natural-image content "
                 "instead of a person, live and spoofed alike, depth 0). Wide records gain the "
                 "columns `photo_source` and `scene_content` (-1 in wide configs, whose images are "
                 "unchanged byte for byte); base configs unchanged. Later (2026-12-04), without a "
                 "version bump: world `wide3` (configs wide3_smoke, wide3_s128), wide2's sessions "
                 "with area-sampled display lattices and print screens and refresh banding along "
                 "the camera's rows; and world `wide4` (configs wide4_smoke, wide4_s128, "
                 "wide4_s128_t60), wide2's physics captured by a sensor 1-3x finer than the crop "
                 "and shrunk to it; and (2026-12-05) configs wide2_s128_t60_x4 and "
                 "wide4_s128_t60_x4, the t60 builds with 120 more training identities numbered "
                 "after the test split's; and configs wide2_s128_f60 and wide4_s128_f60, 60 test "
                 "identities no other config uses (`test_first_identity`), and likewise "
                 "wide2_s128_g60 and wide4_s128_g60 (identities 292-351), _h60 (352-411), _i60 "
                 "(412-471), _j60 (472-531) and _k60 (532-591); every earlier config's records unchanged byte for "
                 "byte, so builds of them made before stay valid.",
    }
    BUILDER_CONFIGS = list(CONFIGS)

    def __init__(self, *, num_workers: int | None = None, **kwargs):
        """Like any TFDS builder, plus `num_workers`: processes rendering records (default: all CPUs).

        `num_workers` does not change the records, only how fast they are made.
        """
        super().__init__(**kwargs)
        self._num_workers = num_workers
        # TFDS re-creates a builder from `_original_state` when it is unpickled.
        self._original_state["num_workers"] = num_workers

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.size
        zlib = tfds.features.Encoding.ZLIB
        wide = {k: tfds.features.Scalar(dtype=np.int32) for k in synthetic.WIDE_FIELDS
                if self.builder_config.world != "base"}
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({**wide,
                "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding=zlib),
                "live_reference": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8,
                                                       encoding=zlib),
                "depth": tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8, encoding=zlib),
                "label": tfds.features.ClassLabel(names=["live", "spoof"]),
                "species": tfds.features.ClassLabel(names=list(synthetic.SPECIES)),
                "device": tfds.features.Scalar(dtype=np.int32),
                "identity": tfds.features.Scalar(dtype=np.int32),
                "video": tfds.features.Scalar(dtype=np.int32),
                "frame": tfds.features.Scalar(dtype=np.int32),
            }),
            # Storage order = plan order (identity-major), so the metadata table and the test of
            # determinism do not depend on TFDS's key hashing. Training shuffles in the pipeline.
            disable_shuffling=True,
            homepage="https://arxiv.org/abs/1807.09968",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data is rendered.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        jobs = [(config, entry) for entry in example_plan(config, split)]
        workers = self._num_workers or os.cpu_count() or 1
        workers = max(1, min(workers, len(jobs)))
        if workers == 1:
            for key, job in enumerate(jobs):
                yield key, _render(job)
            return
        # "spawn", not "fork": the parent may already run JAX's or grain's threads, and forking a
        # multithreaded process can deadlock. imap keeps plan order, so keys == plan positions.
        chunksize = max(1, min(64, len(jobs) // (4 * workers)))
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for key, example in enumerate(pool.imap(_render, jobs, chunksize=chunksize)):
                yield key, example


def physics_table(config: str | SyntheticSpoofConfig, split: str) -> dict[str, np.ndarray]:
    """{`synthetic.PHYSICS_COLUMNS` name: float64 [N]}: the continuous physics (screen pitch,
    print ruling, codec quality...) of a wide-world split's records, in storage order (as
    `load_metadata`), NaN where a record has no such stage. Drawn again from the generator's
    session streams (`synthetic.session_physics`), not read from the build: nothing is rendered,
    and no build is needed (a few seconds for 3600 records)."""
    config = as_config(config)
    if config.world == "base":
        raise ValueError(f"synthetic_spoof/{config.name} is a base-world config; only the wide "
                         "worlds draw the physics that physics_table reports")
    sessions, rows = {}, []
    for e in example_plan(config, split):
        key = (e.identity, e.species, e.device, e.video)
        if key not in sessions:   # the frames of a session share its physics
            sessions[key] = synthetic.session_physics(
                seed=config.seed, identity=e.identity, species=e.species, device=e.device,
                video=e.video, difficulty=config.difficulty, world=config.world,
                size=config.size)
        rows.append(sessions[key])
    return {c: np.asarray([r[c] for r in rows], np.float64) for c in synthetic.PHYSICS_COLUMNS}


def as_config(config: str | SyntheticSpoofConfig) -> SyntheticSpoofConfig:
    """A config by name (one of CONFIGS), or the config itself."""
    if isinstance(config, SyntheticSpoofConfig):
        return config
    names = [c.name for c in CONFIGS]
    if config not in names:
        raise ValueError(f"Unknown synthetic_spoof config {config!r}; valid names: {names}, or pass "
                         "a SyntheticSpoofConfig.")
    return CONFIGS[names.index(config)]


def prepare(config: str | SyntheticSpoofConfig, data_dir: epath.PathLike, *,
            num_workers: int | None = None) -> SyntheticSpoof:
    """Builds `config` under `data_dir` unless it is already there; returns the builder.

    Multi-host: build once before the run (or on process 0 behind a barrier); concurrent builds of
    the same config into a shared `data_dir` race.
    """
    config = as_config(config)
    # A predefined config goes by name: TFDS re-creates builders (e.g. when grain pickles the data
    # source into worker processes) and rejects a copy of a predefined config object.
    builder = SyntheticSpoof(config=config.name if config in CONFIGS else config,
                             data_dir=os.fspath(data_dir), num_workers=num_workers)
    if not builder.is_prepared():
        # Say so before minutes of rendering start (e.g. a command pointed at a data_dir
        # without the build it expected): which build, how big, and where.
        n = sum(config.num_examples(split) for split in SPLITS)
        print(f"despoof_jax: building synthetic_spoof/{config.name} ({n} records at "
              f"{config.size} px) into {builder.data_dir}; this renders every record once "
              "(pass the data_dir of an existing build to reuse it)", file=sys.stderr, flush=True)
    builder.download_and_prepare(file_format="array_record")  # A no-op when already built.
    return builder


def load_source(config: str | SyntheticSpoofConfig, data_dir: epath.PathLike, split: str, *,
                num_workers: int | None = None):
    """Random-access source of `split` (a `tfds` ArrayRecord data source), building if missing.

    `source[i]` is the record dict described in the module docstring; `len(source)` records.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    return prepare(config, data_dir, num_workers=num_workers).as_data_source(split)


def metadata_path(builder: SyntheticSpoof, split: str) -> epath.Path:
    """Where the metadata table of `split` lives: beside the ArrayRecord files."""
    return epath.Path(builder.data_dir) / f"metadata-{split}.npz"


def load_metadata(config: str | SyntheticSpoofConfig, data_dir: epath.PathLike, split: str, *,
                  num_workers: int | None = None) -> dict[str, np.ndarray]:
    """Per-record metadata of `split`: {key: int32 [N]} for key in the config's `metadata_keys`
    (METADATA_KEYS, plus the WIDE_FIELDS columns for wide-world configs), record order.

    Read from the records themselves once (so it can never disagree with them), then cached as
    `metadata-{split}.npz` beside the data; later calls read only the small npz.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    builder = prepare(config, data_dir, num_workers=num_workers)
    return metadata_table.read_or_build(metadata_path(builder, split),
                                        builder.as_data_source(split),
                                        builder.builder_config.metadata_keys)
