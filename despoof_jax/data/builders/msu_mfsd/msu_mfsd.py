"""TFDS builder `msu_mfsd`: MSU-MFSD (Wen, Han and Jain, IEEE TIFS 2015).

Layout: `real/real_clientNNN_{laptop,android}_SD_scene01.{mov,mp4}`,
`attack/attack_clientNNN_{laptop,android}_SD_{ipad_video,iphone_video,printed_photo}_scene01.
{mov,mp4}`, each with its face boxes beside it (`<same name>.face`, lines `frame,x1,y1,x2,y2`,
further columns ignored; coordinates in the upright frame), and the published subject lists
`train_sub_list.txt`, `test_sub_list.txt` (one client number per line).

Rotation: some Android videos are stored upside down with a display matrix saying so; it is
applied (`video.sample_frames`), so frames and crops are upright. A copy that lost the metadata can
be fixed with the builder config's `android_rotation` (degrees counter-clockwise, e.g. 180),
applied to every Android video after its metadata.

Splits: test = the test list's clients; MSU-MFSD has no development set, so the last
`dev_subjects` clients of the train list (by number; 3 of 15 in the named configs) form "dev",
train the rest. A video whose client is in neither list is bad input.

Record ids: species 0 live, 1 printed photo, 3 iPhone video, 4 iPad video, in the synthetic
world's numbering (1, 2 print media, 3, 4 display media; 2 is unused); device 0 laptop (MacBook
Air webcam), 1 android (Nexus 5); identity = client number; video unique over the dataset.
"""
from __future__ import annotations

import os
import re

from despoof_jax.data.builders import real_common

SPECIES_NAMES = {0: "live", 1: "printed_photo", 3: "iphone_video", 4: "ipad_video"}
ATTACK_SPECIES = {"printed_photo": 1, "iphone_video": 3, "ipad_video": 4}
DEVICES = {"laptop": 0, "android": 1}
NAME = re.compile(r"(real|attack)_client(\d+)_(laptop|android)_SD_"
                  r"(?:(ipad_video|iphone_video|printed_photo)_)?scene01\.(mov|mp4)")
SUBJECT_LISTS = {"train": "train_sub_list.txt", "test": "test_sub_list.txt"}
DEV_SUBJECTS = 3

_INSTRUCTIONS = """\
MSU-MFSD: request it from Michigan State University (http://biometrics.cse.msu.edu) and extract
it so that `manual_dir` (or `manual_dir/msu_mfsd/`) holds:
    real/real_clientNNN_{laptop,android}_SD_scene01.{mov,mp4}            + .face beside each
    attack/attack_clientNNN_{laptop,android}_SD_{ipad_video,iphone_video,printed_photo}_scene01
        .{mov,mp4}                                                      + .face beside each
    train_sub_list.txt  test_sub_list.txt
Build: import despoof_jax.data.builders.msu_mfsd, then
    tfds.builder("msu_mfsd", data_dir=D).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=M))
or train with --config.data.manual_dir=M (default: <data_dir>/downloads/manual).
"""


def read_subject_list(path: str) -> list[int]:
    """Client numbers of a subject list file (one per line, e.g. `002` or `client002`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: MSU-MFSD subject list is missing.\n{_INSTRUCTIONS}")
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = re.fullmatch(r"\s*(?:client)?(\d+)\s*", line)
            if not m:
                raise real_common.BadInputError(
                    f"{path} line {number}: expected a client number, got {line.strip()!r}")
            out.append(int(m.group(1)))
    return out


class MsuMfsd(real_common.RealDatasetBuilder):
    """MSU-MFSD live/print/replay videos of 35 clients on two devices; see the module docstring."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    BUILDER_CONFIGS = real_common.standard_configs(dev_subjects=DEV_SUBJECTS)
    SPECIES_NAMES = SPECIES_NAMES
    HOMEPAGE = "https://biometrics.cse.msu.edu/Publications/Databases/MSUMobileFaceSpoofing/"
    ROOT_ENTRIES = ("real", "attack") + tuple(SUBJECT_LISTS.values())
    PUBLISHED_VIDEOS = 280   # 35 clients x 8 videos

    def _plan(self, root, problems):
        lists = {s: read_subject_list(os.path.join(root, f)) for s, f in SUBJECT_LISTS.items()}
        both = set(lists["train"]) & set(lists["test"])
        if both:
            raise real_common.BadInputError(
                f"{root}: clients {sorted(both)} are in both train_sub_list.txt and "
                "test_sub_list.txt")
        train = sorted(set(lists["train"]))
        n_dev = self.builder_config.dev_subjects
        if n_dev >= len(train):
            raise ValueError(f"{root}/train_sub_list.txt: {len(train)} clients, too few to hold "
                             f"out dev_subjects={n_dev} for the dev split.")
        split_of = {c: "train" for c in train}
        split_of.update({c: "dev" for c in train[len(train) - n_dev:]} if n_dev else {})
        split_of.update({c: "test" for c in lists["test"]})
        plan = {"train": [], "dev": [], "test": []}
        rels = (real_common.list_files(root, "real", (".mov", ".mp4"))
                + real_common.list_files(root, "attack", (".mov", ".mp4")))
        for video_id, rel in enumerate(sorted(rels, key=lambda r: os.path.basename(r)), 1):
            m = NAME.fullmatch(os.path.basename(rel))
            if not m or (m.group(1) == "real") != (m.group(4) is None) or \
                    not rel.startswith(m.group(1) + "/"):
                problems.report("?", rel, "file name does not follow the published pattern")
                continue
            client, device = int(m.group(2)), m.group(3)
            if client not in split_of:
                problems.report("?", rel, f"client {client} is in neither "
                                "train_sub_list.txt nor test_sub_list.txt")
                continue
            split = split_of[client]
            species = 0 if m.group(1) == "real" else ATTACK_SPECIES[m.group(4)]
            annotation = rel.rsplit(".", 1)[0] + ".face"
            if not os.path.isfile(os.path.join(root, annotation)):
                problems.report(split, rel, f"its face file {annotation} is missing")
                continue
            plan[split].append(real_common.VideoJob(
                split=split, source=rel, label=int(species > 0), species=species,
                device=DEVICES[device], identity=client, video=video_id,
                annotation=annotation, annotation_format="corners",
                rotation=self.builder_config.android_rotation if device == "android" else 0))
        return plan
