"""TFDS builder `replay_attack`: Idiap Replay-Attack (Chingovska et al., BIOSIG 2012), Table 5.

Layout: `{train,devel,test}/real/clientNNN_session01_webcam_authenticate_{adverse,controlled}_
{1,2}.mov` and `{train,devel,test}/attack/{fixed,hand}/attack_{print,mobile,highdef}_clientNNN_
session01_<content>_{adverse,controlled}.mov`; the face of every frame in
`face-locations/<same relative path>.face` (lines `frame x y w h`, frames counted from 0 as the
dataset documents; all zeros: no face found, so the offline detector is asked instead). The
`enroll/` videos are not used.

A video without its face file is bad input (`skip_bad` leaves it out), not an incomplete download:
the video is there, and cropping it from the detector alone would quietly mix two crop sources in
one dataset; it counts as found, so it does not trip the published-count check.

Splits: train, dev = devel, test.

Record ids: species 0 live, 1 print, 3 mobile (iPhone display), 4 highdef (iPad display), in the
synthetic world's numbering (1, 2 print media, 3, 4 display media; 2 is unused); device 0 (one
webcam); identity = client number; columns `light` 0 controlled / 1 adverse and `support` 0 none
(live) / 1 fixed / 2 hand; video unique over the dataset.
"""
from __future__ import annotations

import os
import re

from despoof_jax.data.builders import real_common

SPECIES_NAMES = {0: "live", 1: "print", 3: "mobile", 4: "highdef"}
ATTACK_SPECIES = {"print": 1, "mobile": 3, "highdef": 4}
SPLIT_FOLDERS = {"train": "train", "dev": "devel", "test": "test"}
LIGHT = {"controlled": 0, "adverse": 1}
SUPPORT = {"fixed": 1, "hand": 2}
REAL = re.compile(r"client(\d+)_session\d+_webcam_authenticate_(adverse|controlled)_\d+\.mov")
ATTACK = re.compile(r"attack_(print|mobile|highdef)_client(\d+)_session\d+_.+_"
                    r"(adverse|controlled)\.mov")

_INSTRUCTIONS = """\
Replay-Attack: request it at https://www.idiap.ch/en/dataset/replayattack and extract it so that
`manual_dir` (or `manual_dir/replay_attack/`) holds:
    {train,devel,test}/real/clientNNN_session01_webcam_authenticate_<light>_<n>.mov
    {train,devel,test}/attack/{fixed,hand}/attack_{print,mobile,highdef}_clientNNN_..._<light>.mov
    face-locations/<the same relative paths, with .face instead of .mov>
Build: import despoof_jax.data.builders.replay_attack, then
    tfds.builder("replay_attack", data_dir=D).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=M))
or train with --config.data.manual_dir=M (default: <data_dir>/downloads/manual).
"""


class ReplayAttack(real_common.RealDatasetBuilder):
    """Replay-Attack live/print/display videos of 50 clients; see the module docstring."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    SPECIES_NAMES = SPECIES_NAMES
    EXTRA_COLUMNS = ("light", "support")
    HOMEPAGE = "https://www.idiap.ch/en/dataset/replayattack"
    ROOT_ENTRIES = tuple(SPLIT_FOLDERS.values()) + ("face-locations",)
    PUBLISHED_VIDEOS = 1200   # train 360, devel 360, test 480; enroll/ is not read

    def _plan(self, root, problems):
        plan, video_id = {}, 0
        for split, folder in SPLIT_FOLDERS.items():
            jobs = []
            for sub in ("real", "attack/fixed", "attack/hand"):
                if not os.path.isdir(os.path.join(root, folder, sub)):
                    raise FileNotFoundError(f"{os.path.join(root, folder, sub)} is missing.\n"
                                            f"{_INSTRUCTIONS}")
                for rel in real_common.list_files(root, f"{folder}/{sub}", (".mov",)):
                    name = os.path.basename(rel)
                    m = (REAL if sub == "real" else ATTACK).fullmatch(name)
                    if not m:
                        problems.report(split, rel, f"file name does not follow the published "
                                        f"pattern of {sub}/ videos")
                        continue
                    video_id += 1
                    if sub == "real":
                        client, light, species, support = int(m.group(1)), m.group(2), 0, 0
                    else:
                        species = ATTACK_SPECIES[m.group(1)]
                        client, light = int(m.group(2)), m.group(3)
                        support = SUPPORT[sub.split("/")[1]]
                    annotation = f"face-locations/{rel[:-4]}.face"
                    if not os.path.isfile(os.path.join(root, annotation)):
                        problems.report(split, rel, f"its face file {annotation} is missing")
                        continue
                    jobs.append(real_common.VideoJob(
                        split=split, source=rel, label=int(species > 0), species=species,
                        device=0, identity=client, video=video_id,
                        columns=(("light", LIGHT[light]), ("support", support)),
                        annotation=annotation, annotation_format="xywh", annotation_base=0))
            plan[split] = jobs
        return plan
