"""Miniature copies of the real datasets' published layouts, for the builder tests.

Every video is a few small frames (160 x 128) cut from a real face photograph,
`skimage.data.astronaut()` (a NASA portrait, public domain), through a window that slides so the
face moves across the frame; each frame's true face box and eye centres are known, and written
as the dataset's own annotation files. Plumbing only: never train a model on these.

The trees hold the published file and folder names, protocol and subject-list files; which
videos exist is up to the caller, so a test can make a tree as small as it needs.
"""
from __future__ import annotations

import functools
import os
from typing import Iterable, NamedTuple, Sequence

import numpy as np

WIDTH, HEIGHT = 160, 128
# The photo at 256 x 256 (half size). Face measured with MediaPipe on the 512 px original
# (detector box centre (225.2, 130.5), side 95.3; face mesh iris centres (203.5, 101.1) and
# (246.6, 103.5)), halved.
PHOTO_SIZE = 256
FACE_CENTRE = (112.6, 65.3)
FACE_SIDE = 47.7
EYES = ((101.75, 50.55), (123.3, 51.75))


@functools.lru_cache(maxsize=None)
def photo() -> np.ndarray:
    """uint8 [256, 256, 3]: the astronaut photo at half size."""
    from PIL import Image  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415
    return np.asarray(Image.fromarray(data.astronaut()).resize((PHOTO_SIZE, PHOTO_SIZE),
                                                               Image.BILINEAR))


class Frame(NamedTuple):
    rgb: np.ndarray                                   # uint8 [HEIGHT, WIDTH, 3], upright
    centre: tuple[float, float]                       # face box centre in the frame (x, y)
    eyes: tuple[tuple[float, float], tuple[float, float]]


def window(k: int) -> tuple[int, int]:
    """Top-left corner in the photo of frame k's window: the face moves 3 px right and 1 px down
    per frame (the window moves the other way)."""
    return 60 - 3 * k, 14 - k


def frames(n: int, tint: Sequence[float] = (1.0, 1.0, 1.0)) -> list[Frame]:
    """n frames of the moving face; `tint` scales RGB (to tell videos apart)."""
    out, img = [], photo().astype(np.float32) * np.asarray(tint, np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for k in range(n):
        x0, y0 = window(k)
        if x0 < 0 or y0 < 0:
            raise ValueError(f"frames: at most 14 frames, asked {n}")
        rgb = np.ascontiguousarray(img[y0:y0 + HEIGHT, x0:x0 + WIDTH])
        centre = (FACE_CENTRE[0] - x0, FACE_CENTRE[1] - y0)
        eyes = tuple((x - x0, y - y0) for x, y in EYES)
        out.append(Frame(rgb, centre, eyes))
    return out


def write_video(path: str, rgbs: Iterable[np.ndarray], *, rotation: int = 0,
                metadata: bool = True, fps: int = 30, dropped: Sequence[int] = ()) -> None:
    """Encodes upright frames (uint8 [H, W, 3]) with MPEG-4 Part 2 into path (.avi/.mov/.mp4).

    rotation: store the frames turned by -rotation degrees with a display matrix of `rotation`
    (counter-clockwise), as phones do, so that a player shows them upright; metadata=False leaves
    the display matrix out (a copy that lost it: the frames then play turned).
    dropped: frame slots (of len(rgbs) + len(dropped)) left without a picture, as a recorder does
    for frames it dropped: in an .avi file, empty chunks that the container counts as frames and
    the decoder skips.
    """
    import av  # noqa: PLC0415

    from despoof_jax.data import video  # noqa: PLC0415
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rgbs = [video.upright(np.asarray(f), -rotation) for f in rgbs]
    with av.open(path, "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = rgbs[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        if rotation and metadata:
            stream.set_display_rotation(rotation)
        packets = [p for rgb in rgbs
                   for p in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"))]
        packets += stream.encode()
        # FFmpeg's AVI muxer fills a gap in the timestamps with empty chunks.
        slots = [k for k in range(len(rgbs) + len(dropped)) if k not in set(dropped)]
        for packet in packets:
            if dropped:
                packet.pts, packet.dts = slots[packet.pts], slots[packet.dts]
            out.mux(packet)


def _write_lines(path: str, lines: Iterable[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(line + "\n" for line in lines)


def box_of(fr: Frame) -> tuple[int, int, int, int]:
    """x, y, w, h of the face box of a frame, in whole pixels (as the annotation files hold)."""
    x, y = round(fr.centre[0] - FACE_SIDE / 2), round(fr.centre[1] - FACE_SIDE / 2)
    return x, y, round(FACE_SIDE), round(FACE_SIDE)


def eyes_of(fr: Frame) -> tuple[int, int, int, int]:
    """x1, y1, x2, y2 of the eye centres of a frame, in whole pixels (as Oulu-NPU's files)."""
    (x1, y1), (x2, y2) = fr.eyes
    return round(x1), round(y1), round(x2), round(y2)


# ---------------------------------------------------------------------------------------------
# Oulu-NPU.

OULU_FOLDERS = {"train": "Train_files", "dev": "Dev_files", "test": "Test_files"}
OULU_USERS = {"train": range(1, 21), "dev": range(21, 36), "test": range(36, 56)}


def oulu_split(user: int) -> str:
    return next(s for s, users in OULU_USERS.items() if user in users)


def oulu_protocol_lists(names: Sequence[str]) -> dict[str, list[str]]:
    """{"Protocol_1/Train.txt": [names listed], ...} by the published rules, over `names`
    (P_S_U_F strings): P1 sessions 1-2 for train/dev, 3 for test; P2 print1/replay1 (files 1, 2,
    4) for train/dev, print2/replay2 (1, 3, 5) for test; P3 fold k leaves phone k out of train/dev
    and tests on it; P4 both, with P1's sessions."""
    out: dict[str, list[str]] = {}

    def add(key, pred):
        for split, stem in (("train", "Train"), ("dev", "Dev"), ("test", "Test")):
            out[key.format(split=stem)] = [
                n for n in names if oulu_split(int(n.split("_")[2])) == split and pred(split, n)]

    def parts(n):
        return tuple(int(x) for x in n.split("_"))

    seen, unseen = (1, 2, 4), (1, 3, 5)
    add("Protocol_1/{split}.txt", lambda s, n: (parts(n)[1] == 3) == (s == "test"))
    add("Protocol_2/{split}.txt", lambda s, n: parts(n)[3] in (unseen if s == "test" else seen))
    for k in range(1, 7):
        add(f"Protocol_3/{{split}}_{k}.txt", lambda s, n, k=k: (parts(n)[0] == k) == (s == "test"))
        add(f"Protocol_4/{{split}}_{k}.txt", lambda s, n, k=k: (
            (parts(n)[0] == k) == (s == "test") and (parts(n)[1] == 3) == (s == "test")
            and parts(n)[3] in (unseen if s == "test" else seen)))
    return out


def _oulu_label(rel: str, name: str) -> str:
    """As the published lists: +1 live, -1 attack; Test lists write -2 for display attacks."""
    if name.endswith("_1"):
        return "+1"
    return "-2" if os.path.basename(rel).startswith("Test") and name[-1] in "45" else "-1"


# Every video of the published dataset: 6 phones x 3 sessions x 55 users x 5 files.
OULU_ALL = [(p, s, u, f) for p in range(1, 7) for s in range(1, 4) for u in range(1, 56)
            for f in range(1, 6)]


def oulu_tree(root: str, videos: Sequence[tuple[int, int, int, int]], n_frames: int = 5,
              first_frame: int = 0,
              listed: Sequence[tuple[int, int, int, int]] | None = None) -> dict:
    """Writes an Oulu-NPU tree with `videos` = [(phone, session, user, file)] and the protocol
    files by the published rules; returns {name: frames} with the true face positions.

    first_frame: the number the annotation files give each video's first frame (0 or 1: which
    one the real files use is not documented). listed: the videos the protocol files list
    (default `videos`; `OULU_ALL` for the published lists, as a partial download holds them)."""
    written, names = {}, []
    for p, s, u, f in videos:
        name = f"{p}_{s}_{u:02d}_{f}"
        names.append(name)
        folder = os.path.join(root, OULU_FOLDERS[oulu_split(u)])
        fr = frames(n_frames, tint=(1.0, 1.0 - 0.05 * (f - 1), 1.0))
        write_video(os.path.join(folder, name + ".avi"), [x.rgb for x in fr])
        _write_lines(os.path.join(folder, name + ".txt"), (
            "{},{},{},{},{}".format(k + first_frame, *eyes_of(x)) for k, x in enumerate(fr)))
        written[name] = fr
    if listed is not None:
        names = [f"{p}_{s}_{u:02d}_{f}" for p, s, u, f in listed]
    for rel, members in oulu_protocol_lists(names).items():
        _write_lines(os.path.join(root, "Protocols", rel),
                     (f"{_oulu_label(rel, n)},{n}" for n in members))
    return written


# ---------------------------------------------------------------------------------------------
# CASIA-FASD.

CASIA_VIDEOS = ("1", "2", "HR_1", "3", "4", "HR_2", "5", "6", "HR_3", "7", "8", "HR_4")


def casia_tree(root: str, subjects: dict[str, Sequence[int]], n_frames: int = 3,
               videos: Sequence[str] = CASIA_VIDEOS) -> dict:
    """CASIA-FASD: {train,test}_release/<subject>/<video>.avi; subjects = {"train": [...], ...}."""
    written = {}
    for split, subs in subjects.items():
        for sub in subs:
            for v in videos:
                rel = f"{split}_release/{sub}/{v}.avi"
                fr = frames(n_frames)
                write_video(os.path.join(root, rel), [x.rgb for x in fr])
                written[rel] = fr
    return written


# ---------------------------------------------------------------------------------------------
# Replay-Attack.


def replay_tree(root: str, clients: dict[str, Sequence[int]], n_frames: int = 3,
                attacks: Sequence[tuple[str, str]] = (("print", "fixed"), ("mobile", "hand"),
                                                      ("highdef", "fixed")),
                no_face_frames: Sequence[int] = ()) -> dict:
    """Replay-Attack: {train,devel,test}/real/, attack/{fixed,hand}/ .mov and face-locations/.

    clients = {"train": [1], "devel": [3], "test": [5]}; each client gets one real video
    (controlled light) and one attack video per (kind, support) in `attacks`. Frames listed in
    `no_face_frames` are annotated `k 0 0 0 0` (the files' "no face")."""
    written = {}
    for split, cs in clients.items():
        for sub in ("real", "attack/fixed", "attack/hand"):
            os.makedirs(os.path.join(root, split, sub), exist_ok=True)
        for c in cs:
            rels = [f"{split}/real/client{c:03d}_session01_webcam_authenticate_controlled_1.mov"]
            rels += [f"{split}/attack/{support}/attack_{kind}_client{c:03d}_session01_"
                     f"{'highdef' if kind == 'print' else kind}_photo_adverse.mov"
                     for kind, support in attacks]
            for rel in rels:
                fr = frames(n_frames)
                write_video(os.path.join(root, rel), [x.rgb for x in fr])
                _write_lines(os.path.join(root, "face-locations", rel[:-4] + ".face"), (
                    "{} {} {} {} {}".format(k, *((0,) * 4 if k in no_face_frames else box_of(x)))
                    for k, x in enumerate(fr)))
                written[rel] = fr
    return written


# ---------------------------------------------------------------------------------------------
# MSU-MFSD.


def _corners(box):
    x, y, w, h = box
    return x, y, x + w, y + h


def msu_tree(root: str, train: Sequence[int], test: Sequence[int], n_frames: int = 3,
             android_rotation: int = 180, android_metadata: bool = True) -> dict:
    """MSU-MFSD: real/, attack/ (.mov laptop, .mp4 android, with .face beside them) and the
    subject lists. Android videos are stored turned by -android_rotation degrees with a display
    matrix saying so (left out with android_metadata=False); annotations are in upright frames."""
    written = {}
    for c in list(train) + list(test):
        for device, ext in (("laptop", "mov"), ("android", "mp4")):
            rels = [f"real/real_client{c:03d}_{device}_SD_scene01.{ext}"]
            rels += [f"attack/attack_client{c:03d}_{device}_SD_{kind}_scene01.{ext}"
                     for kind in ("ipad_video", "iphone_video", "printed_photo")]
            for rel in rels:
                fr = frames(n_frames)
                write_video(os.path.join(root, rel), [x.rgb for x in fr],
                            rotation=android_rotation if device == "android" else 0,
                            metadata=android_metadata)
                _write_lines(os.path.join(root, rel.rsplit(".", 1)[0] + ".face"), (
                    "{},{},{},{},{}".format(k, *_corners(box_of(x))) for k, x in enumerate(fr)))
                written[rel] = fr
    _write_lines(os.path.join(root, "train_sub_list.txt"), (f"{c:03d}" for c in train))
    _write_lines(os.path.join(root, "test_sub_list.txt"), (f"{c:03d}" for c in test))
    return written
