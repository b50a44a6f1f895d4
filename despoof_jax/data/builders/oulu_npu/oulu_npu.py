"""TFDS builder `oulu_npu`: Oulu-NPU (Boulkenafet et al., FG 2017), the paper's Table 4.

Splits: train = Train_files (users 1-20), dev = Dev_files (21-35), test = Test_files (36-55).
Video `P_S_U_F.avi`: phone P 1-6, session S 1-3, user U 01-55, file F 1 live, 2 print1, 3 print2,
4 replay1 (display1), 5 replay2 (display2); eye positions per frame in `P_S_U_F.txt`.

Record ids: species = F - 1 (0 live, 1 print1, 2 print2, 3 replay1, 4 replay2, the synthetic
world's and `metrics.OULU_SPECIES_NAMES`), device = P - 1, session = S - 1, identity = U,
video = P*10000 + S*1000 + U*10 + F (the file name's digits, unique over the dataset).

Protocols are read from the files, never re-derived: the builder stores, per record, whether its
video is listed in each protocol file of its split (`Protocols/Protocol_1/Train.txt` for a train
record, ...), as the columns `oulu_p1`, `oulu_p2`, `oulu_p3_1` .. `oulu_p3_6`, `oulu_p4_1` ..
`oulu_p4_6` (1 listed, 0 not), and `PROTOCOLS` selects by them.
"""
from __future__ import annotations

import os
import re

from despoof_jax.data import protocols
from despoof_jax.data.builders import real_common

SPLITS = real_common.SPLITS
SPECIES_NAMES = {0: "live", 1: "print1", 2: "print2", 3: "replay1", 4: "replay2"}
SPLIT_FOLDERS = {"train": "Train_files", "dev": "Dev_files", "test": "Test_files"}
PROTOCOL_FILE_SPLITS = {"train": "Train", "dev": "Dev", "test": "Test"}
FOLDS = 6
# (protocol number, fold or None) -> membership column.
PROTOCOL_COLUMNS = {(1, None): "oulu_p1", (2, None): "oulu_p2",
                    **{(p, k): f"oulu_p{p}_{k}" for p in (3, 4) for k in range(1, FOLDS + 1)}}
NAME = re.compile(r"([1-6])_([1-3])_(\d\d)_([1-5])")

_INSTRUCTIONS = """\
Oulu-NPU: request it at https://sites.google.com/site/oulunpudatabase/ and extract it so that
`manual_dir` (or `manual_dir/oulu_npu/`) holds:
    Train_files/  Dev_files/  Test_files/   P_S_U_F.avi videos and their P_S_U_F.txt eye
                                            positions (one line per frame: frame,x1,y1,x2,y2)
    Protocols/Protocol_1/{Train,Dev,Test}.txt
    Protocols/Protocol_2/{Train,Dev,Test}.txt
    Protocols/Protocol_3/{Train,Dev,Test}_{1..6}.txt
    Protocols/Protocol_4/{Train,Dev,Test}_{1..6}.txt   (lines like `+1,1_1_01_1`, `-1,1_1_01_2`;
                                                     Test lists: `-2,1_3_36_4` for replays)
Build: import despoof_jax.data.builders.oulu_npu, then
    tfds.builder("oulu_npu", data_dir=D).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=M))
or train with --config.data.manual_dir=M (default: <data_dir>/downloads/manual).
"""


def protocol_file(root: str, protocol: int, fold: int | None, split: str) -> str:
    """Path of a protocol list file, e.g. Protocols/Protocol_3/Dev_2.txt."""
    stem = PROTOCOL_FILE_SPLITS[split] + ("" if fold is None else f"_{fold}")
    return os.path.join(root, "Protocols", f"Protocol_{protocol}", stem + ".txt")


def published_list_size(protocol: int, split: str) -> int:
    """Videos in a published protocol list (each fold's the same), by the protocols' rules
    (Boulkenafet et al., FG 2017, Table 2): users (train 20, dev 15, test 20) x phones (P1, P2:
    6; P3, P4: 5 for train/dev, the left-out 1 for test) x sessions (P2, P3: 3; P1, P4: 2 for
    train/dev, the third for test) x files (P1, P3: all 5; P2, P4: live + print + display of one
    kind). P1 1200/900/600, P2 1080/810/1080, P3 1500/1125/300, P4 600/450/60."""
    test = split == "test"
    users = {"train": 20, "dev": 15, "test": 20}[split]
    phones = 6 if protocol in (1, 2) else 1 if test else 5
    sessions = 3 if protocol in (2, 3) else 1 if test else 2
    files = 5 if protocol in (1, 3) else 3
    return users * phones * sessions * files


def read_protocol_file(path: str) -> list[tuple[int, str, int]]:
    """[(label, video name, line number)] of one protocol list file: +1 live, -1 attack; the
    published Test lists write -2 for display (replay) attacks, files 4 and 5."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: Oulu-NPU protocol file is missing.\n{_INSTRUCTIONS}")
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = re.fullmatch(r"\s*(\+?1|-1|-2)\s*,\s*(\S+)\s*", line)
            if not m or not NAME.fullmatch(m.group(2)):
                raise real_common.BadInputError(
                    f"{path} line {number}: expected '+1,P_S_U_F' (live), '-1,P_S_U_F' (attack) "
                    f"or '-2,P_S_U_F' (display attack), got {line.strip()!r}")
            out.append((int(m.group(1)), m.group(2), number))
    first = {}
    for _, stem, number in out:
        if stem in first:
            raise real_common.BadInputError(f"{path}: lists {stem} twice (lines {first[stem]} "
                                            f"and {number})")
        first[stem] = number
    return out


class OuluNpu(real_common.RealDatasetBuilder):
    """Oulu-NPU live/print/replay videos of 55 users on 6 phones; see the module docstring."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    SPECIES_NAMES = SPECIES_NAMES
    EXTRA_COLUMNS = ("session",) + tuple(PROTOCOL_COLUMNS.values())
    HOMEPAGE = "https://sites.google.com/site/oulunpudatabase/"
    ROOT_ENTRIES = tuple(SPLIT_FOLDERS.values()) + ("Protocols",)
    PUBLISHED_VIDEOS = 4950   # 55 users x 6 phones x 3 sessions x 5 files

    def _plan(self, root, problems):
        plan, names = {}, {}
        for split, folder in SPLIT_FOLDERS.items():
            names[split] = {}
            for rel in real_common.list_files(root, folder, (".avi",)):
                stem = os.path.basename(rel)[:-4]
                if not NAME.fullmatch(stem):
                    problems.report(split, rel, "file name is not P_S_U_F.avi (phone 1-6, "
                                    "session 1-3, user 01-55, file 1-5)")
                    continue
                names[split][stem] = rel
        # Membership of every (protocol, fold) list, per split. The lists name all 4950 videos: one
        # not there is an incomplete download (`partial` decides), noted once with its first line.
        member = {split: {stem: {} for stem in names[split]} for split in SPLITS}
        absent = {split: {} for split in SPLITS}
        for (p, k), column in PROTOCOL_COLUMNS.items():
            for split in SPLITS:
                path = protocol_file(root, p, k, split)
                rel_list = os.path.relpath(path, root)
                listed = read_protocol_file(path)
                if len(listed) != published_list_size(p, split):
                    problems.list_size(f"{rel_list} lists {len(listed)} videos, the published "
                                       f"list {published_list_size(p, split)}")
                for sign, stem, number in listed:
                    live = stem.endswith("_1")
                    replay = stem[-1] in "45"
                    if (sign == 1) != live or (sign == -2 and not replay):
                        kind = "live" if live else "a display attack" if replay else "a print attack"
                        raise real_common.BadInputError(
                            f"{path} line {number}: label {sign:+d} contradicts {stem} (file "
                            f"{stem[-1]} is {kind})")
                    if stem not in member[split]:
                        absent[split].setdefault(stem, f"listed in {rel_list} line {number}")
                        continue
                    member[split][stem][column] = 1
        for split in SPLITS:
            for stem, where in sorted(absent[split].items()):
                problems.absent(split, f"{SPLIT_FOLDERS[split]}/{stem}.avi", where)
        for split in SPLITS:
            jobs = []
            for stem in sorted(names[split]):
                phone, session, user, file = (int(g) for g in NAME.fullmatch(stem).groups())
                rel = names[split][stem]
                columns = (("session", session - 1),) + tuple(
                    (c, member[split][stem].get(c, 0)) for c in PROTOCOL_COLUMNS.values())
                jobs.append(real_common.VideoJob(
                    split=split, source=rel, label=int(file != 1), species=file - 1,
                    device=phone - 1, identity=user,
                    video=phone * 10000 + session * 1000 + user * 10 + file, columns=columns,
                    annotation=rel[:-4] + ".txt", annotation_format="eyes"))
            plan[split] = jobs
        return plan



def _listed(column: str) -> protocols.SplitSpec:
    return protocols.SplitSpec(extra={column: (1,)})


def _protocols() -> dict[str, protocols.Protocol]:
    """Oulu-NPU's four protocols as membership filters on the columns read from the files."""
    out = {}
    for p, what in ((1, "unseen illumination (session 3)"), (2, "unseen print/display media")):
        spec = _listed(PROTOCOL_COLUMNS[(p, None)])
        out[f"oulu_p{p}"] = protocols.Protocol(
            f"oulu_p{p}", (protocols.Fold(spec, spec, spec),),
            f"Oulu-NPU P{p}: {what}; records listed in Protocols/Protocol_{p}/<Split>.txt.")
    for p, what in ((3, "leave one phone out"), (4, "P1 + P2 + P3 at once")):
        folds = tuple(protocols.Fold(*(_listed(PROTOCOL_COLUMNS[(p, k)]),) * 3)
                      for k in range(1, FOLDS + 1))
        out[f"oulu_p{p}"] = protocols.Protocol(
            f"oulu_p{p}", folds, f"Oulu-NPU P{p}: {what}, {FOLDS} folds; records listed in "
            f"Protocols/Protocol_{p}/<Split>_<fold>.txt.")
    return out


PROTOCOLS: dict[str, protocols.Protocol] = _protocols()
