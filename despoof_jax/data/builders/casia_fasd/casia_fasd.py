"""TFDS builder `casia_fasd`: CASIA-FASD / CASIA-MFSD (Zhang et al., ICB 2012), Table 5.

Layout: `{train,test}_release/<subject>/<video>.avi`, 12 videos per subject: 1, 2, HR_1 live;
3, 4, HR_2 warped photo; 5, 6, HR_3 cut photo; 7, 8, HR_4 video replay (odd numbers low quality,
even numbers normal quality, HR_* high quality). The low/normal order follows the paper's listing
(low, normal, high) as most loaders do; Idiap's `bob.db.casia_fasd` reads 1, 3, 5, 7 as normal
and 2, 4, 6, 8 as low. Nothing here depends on it (no protocol splits CASIA by quality; it is
the `device` column only), so a user who knows otherwise can swap the two codes. No face
annotations ship with it: every crop comes from the offline face detector (`faces.FaceDetector`).

Splits: test = test_release. CASIA-FASD has no development set, so the last `dev_subjects`
subjects of train_release (by number; 5 of 20 in the named configs) form "dev", on which the
threshold of a CASIA-trained model is chosen (the cross test's source side, Table 5); train is
the rest.

Record ids: species 0 live, 1 warped photo (print1), 2 cut photo (print2), 3 video replay
(replay1), in the synthetic world's numbering (1, 2 print media, 3, 4 display media);
device = quality 0 low, 1 normal, 2 high; identity = subject for train_release, 100 + subject for
test_release (both number their subjects from 1); video unique over the dataset.
"""
from __future__ import annotations

import os
import re

from despoof_jax.data.builders import real_common

SPECIES_NAMES = {0: "live", 1: "warped_photo", 2: "cut_photo", 3: "video_replay"}
# video name -> (species, quality)
VIDEOS = {"1": (0, 0), "2": (0, 1), "HR_1": (0, 2),
          "3": (1, 0), "4": (1, 1), "HR_2": (1, 2),
          "5": (2, 0), "6": (2, 1), "HR_3": (2, 2),
          "7": (3, 0), "8": (3, 1), "HR_4": (3, 2)}
RELEASES = {"train": "train_release", "test": "test_release"}
TEST_IDENTITY_OFFSET = 100
DEV_SUBJECTS = 5

_INSTRUCTIONS = """\
CASIA-FASD (CASIA-MFSD): request it from the Chinese Academy of Sciences (CBSR) and extract it so
that `manual_dir` (or `manual_dir/casia_fasd/`) holds:
    train_release/<subject>/{1,2,3,4,5,6,7,8,HR_1,HR_2,HR_3,HR_4}.avi   (subjects 1..20)
    test_release/<subject>/{...same 12 videos...}.avi                  (subjects 1..30)
Build: import despoof_jax.data.builders.casia_fasd, then
    tfds.builder("casia_fasd", data_dir=D).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=M))
or train with --config.data.manual_dir=M (default: <data_dir>/downloads/manual).
"""


class CasiaFasd(real_common.RealDatasetBuilder):
    """CASIA-FASD live/photo/video-replay videos of 50 subjects; see the module docstring."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    BUILDER_CONFIGS = real_common.standard_configs(dev_subjects=DEV_SUBJECTS)
    SPECIES_NAMES = SPECIES_NAMES
    HOMEPAGE = "http://www.cbsr.ia.ac.cn/english/FASDB_Agreement/Agreement.pdf"
    ROOT_ENTRIES = tuple(RELEASES.values())
    PUBLISHED_VIDEOS = 600   # 50 subjects x 12 videos

    def _plan(self, root, problems):
        plan = {"train": [], "dev": [], "test": []}
        video_id = 0
        for release_split, release in RELEASES.items():
            folder = os.path.join(root, release)
            subjects = []
            for name in sorted(os.listdir(folder)):
                if not os.path.isdir(os.path.join(folder, name)):
                    continue
                if not re.fullmatch(r"\d+", name):
                    problems.report(release_split, f"{release}/{name}",
                                    "subject folder name is not a number")
                    continue
                subjects.append((int(name), name))
            subjects.sort()
            if not subjects:
                raise FileNotFoundError(f"{folder}: holds no subject folder.\n{_INSTRUCTIONS}")
            n_dev = self.builder_config.dev_subjects if release_split == "train" else 0
            if n_dev >= len(subjects):
                raise ValueError(f"{folder}: {len(subjects)} subjects, too few to hold out "
                                 f"dev_subjects={n_dev} for the dev split.")
            dev = set(subjects[len(subjects) - n_dev:]) if n_dev else set()
            for subject, folder_name in subjects:
                split = "dev" if (subject, folder_name) in dev else release_split
                sub_dir = f"{release}/{folder_name}"
                present = {f[:-4]: f for f in os.listdir(os.path.join(root, sub_dir))
                           if f.lower().endswith(".avi")}
                for extra in sorted(set(present) - set(VIDEOS)):
                    problems.report(split, f"{sub_dir}/{present[extra]}",
                                    f"unexpected video name (expected {sorted(VIDEOS)})")
                for name, (species, quality) in VIDEOS.items():
                    video_id += 1
                    rel = f"{sub_dir}/{name}.avi"
                    if name not in present:   # an incomplete download (`partial` decides)
                        problems.absent(split, rel, f"one of the 12 videos of {sub_dir}/")
                        continue
                    identity = subject + (TEST_IDENTITY_OFFSET if release_split == "test" else 0)
                    plan[split].append(real_common.VideoJob(
                        split=split, source=f"{sub_dir}/{present[name]}", label=int(species > 0),
                        species=species, device=quality, identity=identity, video=video_id))
        return plan
