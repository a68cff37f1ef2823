"""Synthetic "shapes" video sequences with ground-truth tracks in MOT Challenge format, for measuring tracking.

The objects are the still set's shapes (synthetic.py: circles, squares, triangles, stars, filled with a shaded colour
far from the background, on the same textured background with sensor noise), so a detector trained on the still set
detects them. In a sequence each shape moves with a constant velocity and now and then turns (its heading rotates
by 30-90 degrees over 10-30 frames) and spins slowly; shapes enter through the border aiming at the middle of the
frame, so their paths cross, and leave through it. Every shape has a fixed depth: the nearer one is drawn later and
hides the one behind (partly, or wholly for a while, after which it reappears with the same id). The background is
fixed for a sequence (a still camera); the noise is drawn again for every frame.

Output for ``make_shapes_videos(out_dir, num_sequences=N, num_frames=T, size=S, seed=K)``::

    OUT/seq_000/video.mp4        T frames, S x S, 30 fps, MPEG-4 Part 2 (OpenCV VideoWriter, fourcc mp4v)
    OUT/seq_000/gt/gt.txt        ground truth, MOT Challenge format, one line per visible object per frame
    OUT/seq_000/seqinfo.ini      name, frame rate, length and size (the file MOT Challenge tools read)
    ...                          up to seq_{N-1}

A ``gt.txt`` line is ``frame,id,x,y,w,h,consider,class,visibility``:

- ``frame`` 1..T, the frame's position in the video; ``id`` the object's track id (1, 2, ... in the order objects
  appear; unique in the sequence, kept through occlusions);
- ``x,y,w,h`` the tight box of the object's *visible* pixels in the frame (the pixels it was drawn with, after the
  nearer shapes and the frame border), in 0-based pixel edges -- the convention of the still set's COCO boxes and of
  the detector's output, not MOT Challenge's 1-based one;
- ``consider`` (MOT's column 7): 1 = an object to track, 0 = a don't-care object (less than ``min_visibility`` of it
  visible: entering, leaving or mostly hidden), which ssdlite.evaluation.mot neither counts as missed when no
  result box covers it nor as a false positive when one does -- as MOT Challenge treats its column-7 zeros;
- ``class`` (column 8): the shape label, 1 circle, 2 square, 3 triangle, 4 star (as in the still set's COCO ids);
- ``visibility`` (column 9): the visible fraction of the whole shape (its pixels in the frame and not hidden by a
  nearer shape, over the pixels of the uncut, unhidden shape), 0 < v <= 1, three decimals.

An object with no visible pixel in a frame has no line in that frame.

Deterministic: sequence ``i`` is drawn from generators seeded by (seed, i), so the same arguments give identical
``gt.txt`` files and frames (and sequence ``i`` does not depend on how many sequences are written).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssdlite.data.synthetic import SHAPE_CLASSES, _background, _check_object_sizes, shape_mask

__all__ = [
    "DEFAULT_VIDEO_OBJECT_SIZES",
    "VideoObject",
    "format_gt_line",
    "make_shapes_videos",
    "render_shapes_sequence",
]

DEFAULT_VIDEO_OBJECT_SIZES: tuple[float, float] = (0.2, 0.4)
"""Shape extent relative to the frame side: within the ``make demo`` set's 0.2-0.5, so its model detects them,
and small enough that several shapes fit in a frame and cross."""
DEFAULT_MIN_VISIBILITY = 0.5
FRAME_RATE = 30
_MAX_OBJECTS = 4
_SPAWN_PROBABILITY = 0.03  # per frame, while fewer than max_objects shapes are in play
_TURN_PROBABILITY = 1 / 120  # per shape and frame
_SPEED = (0.004, 0.012)  # fraction of the frame side per frame (1.3-3.8 px at 320 px)
_SPIN = 0.02  # largest rotation speed, radians per frame
_NEVER_ENTERED_FRAMES = 90  # a shape that has not come into view after this many frames is dropped
_MIN_COLOUR_DISTANCE = 70.0  # RGB distance between a shape and every cell of the background


@dataclass(frozen=True)
class VideoObject:
    """One shape in one frame: track id, label (1..4), tight xyxy box of its visible pixels (pixel edges),
    visible / in-frame / whole pixel counts, and its fill colour (RGB, before shading and noise)."""

    track_id: int
    label: int
    box: tuple[int, int, int, int]
    visible_area: int
    in_frame_area: int
    full_area: int
    colour: tuple[int, int, int]

    @property
    def visibility(self) -> float:
        return self.visible_area / self.full_area


@dataclass
class _Mover:
    track_id: int
    label: int
    extent: float
    depth: float
    colour: np.ndarray
    shade_direction: np.ndarray
    shade_strength: float
    position: np.ndarray
    velocity: np.ndarray
    rotation: float
    spin: float
    born: int
    seen: bool = False
    turn_frames: int = 0
    turn_rate: float = 0.0

    def step(self, rng: np.random.Generator) -> None:
        if self.turn_frames == 0 and rng.random() < _TURN_PROBABILITY:
            self.turn_frames = int(rng.integers(10, 31))
            self.turn_rate = float(rng.choice([-1.0, 1.0]) * rng.uniform(math.pi / 6, math.pi / 2)) / self.turn_frames
        if self.turn_frames:
            cos, sin = math.cos(self.turn_rate), math.sin(self.turn_rate)
            self.velocity = np.array([cos * self.velocity[0] - sin * self.velocity[1],
                                      sin * self.velocity[0] + cos * self.velocity[1]])
            self.turn_frames -= 1
        self.position = self.position + self.velocity
        self.rotation += self.spin


def render_shapes_sequence(
    seed: int,
    index: int = 0,
    *,
    num_frames: int,
    size: int = 320,
    object_sizes: tuple[float, float] = DEFAULT_VIDEO_OBJECT_SIZES,
    max_objects: int = _MAX_OBJECTS,
) -> Iterator[tuple[np.ndarray, list[VideoObject], np.ndarray]]:
    """Yields the frames of sequence ``index`` one by one (see the module docstring for what moves how).

    Args:
        seed: random seed of the set.
        index: the sequence's number in the set (its generators are seeded by (seed, index)).
        num_frames: frames to draw (>= 1).
        size: frame side in pixels (>= 32).
        object_sizes: (smallest, largest) shape extent as fractions of ``size``.
        max_objects: most shapes in play at once (>= 1).

    Yields:
        image: np.ndarray[size, size, 3] uint8 RGB.
        objects: the shapes with visible pixels in this frame, by track id.
        owner: np.ndarray[size, size] int32, the track id each pixel shows, 0 for background.
    """
    if num_frames < 1:
        raise ValueError(f"a shapes sequence needs num_frames >= 1, got {num_frames}")
    if size < 32:
        raise ValueError(f"shapes sequences need a frame side >= 32 pixels, got {size}")
    if max_objects < 1:
        raise ValueError(f"shapes sequences need max_objects >= 1, got {max_objects}")
    object_sizes = _check_object_sizes(object_sizes)
    rng = np.random.default_rng([seed, index])
    noise_rng = np.random.default_rng([seed, index, 1])
    background = _background(rng, size)
    cells = cv2.resize(background, (8, 8), interpolation=cv2.INTER_AREA).reshape(-1, 3)
    noise_sigma = np.float32(rng.uniform(2, 10))
    pad = int(math.ceil(object_sizes[1] * size)) + 2  # the uncut shape fits in the padded canvas
    movers: list[_Mover] = []
    next_id = 1

    def spawn(frame: int, *, inside: bool) -> None:
        nonlocal next_id
        label = int(rng.integers(1, len(SHAPE_CLASSES) + 1))
        extent = size * math.exp(rng.uniform(math.log(object_sizes[0]), math.log(object_sizes[1])))
        speed = size * rng.uniform(*_SPEED)
        if inside:
            position = rng.uniform(0.15, 0.85, size=2) * size
            angle = rng.uniform(0, 2 * math.pi)
            heading = np.array([math.cos(angle), math.sin(angle)])
        else:  # just outside a border, heading for the middle of the frame
            side, along = int(rng.integers(4)), rng.uniform(0.1, 0.9) * size
            outside = -0.75 * extent if side in (0, 1) else size + 0.75 * extent
            position = np.array([outside, along]) if side in (0, 2) else np.array([along, outside])
            heading = rng.uniform(0.25, 0.75, size=2) * size - position
            heading /= np.linalg.norm(heading)
        movers.append(_Mover(
            track_id=next_id, label=label, extent=extent, depth=float(rng.random()), colour=_pick_colour(rng, cells),
            shade_direction=_unit(rng.normal(size=2)), shade_strength=float(rng.uniform(0, 40)),
            position=position, velocity=heading * speed, rotation=float(rng.uniform(0, 2 * math.pi)),
            spin=float(rng.uniform(-_SPIN, _SPIN)), born=frame,
        ))
        next_id += 1

    for _ in range(int(rng.integers(1, max_objects + 1))):
        spawn(1, inside=True)
    for frame in range(1, num_frames + 1):
        if frame > 1:
            for mover in movers:
                mover.step(rng)
            if len(movers) < max_objects and rng.random() < _SPAWN_PROBABILITY:
                spawn(frame, inside=False)
        canvas = background.copy()
        owner = np.zeros((size, size), dtype=np.int32)
        areas: dict[int, tuple[int, int]] = {}
        windows: dict[int, tuple[slice, slice]] = {}  # each shape's in-frame bounding rectangle
        for mover in sorted(movers, key=lambda m: m.depth):  # far to near: the nearer shape hides the farther
            full = shape_mask(mover.label, size + 2 * pad, mover.position + pad, mover.extent, mover.rotation)
            mask = full[pad:pad + size, pad:pad + size]
            x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
            areas[mover.track_id] = (int(np.count_nonzero(mask[y:y + h, x:x + w])), int(np.count_nonzero(full)))
            if not w:
                continue
            windows[mover.track_id] = (slice(y, y + h), slice(x, x + w))
            ys, xs = np.nonzero(mask[y:y + h, x:x + w])
            ys, xs = ys + y, xs + x
            shade = ((xs - mover.position[0]) * mover.shade_direction[0]
                     + (ys - mover.position[1]) * mover.shade_direction[1]) / mover.extent * mover.shade_strength
            canvas[ys, xs] = mover.colour[None, :] + shade[:, None].astype(np.float32)
            owner[ys, xs] = mover.track_id
        canvas += noise_rng.standard_normal((size, size, 1), dtype=np.float32) * noise_sigma
        np.clip(canvas, 0, 255, out=canvas)
        objects = []
        for mover in sorted(movers, key=lambda m: m.track_id):
            if mover.track_id not in windows:
                continue
            rows, columns = windows[mover.track_id]
            visible = (owner[rows, columns] == mover.track_id).view(np.uint8)
            x, y, w, h = cv2.boundingRect(visible)
            if w:
                in_frame, full_area = areas[mover.track_id]
                x, y = x + columns.start, y + rows.start
                objects.append(VideoObject(
                    track_id=mover.track_id, label=mover.label, box=(x, y, x + w, y + h),
                    visible_area=int(np.count_nonzero(visible)), in_frame_area=in_frame, full_area=full_area,
                    colour=tuple(int(round(float(v))) for v in mover.colour),
                ))
        yield canvas.astype(np.uint8), objects, owner
        for mover in movers:
            mover.seen = mover.seen or areas[mover.track_id][0] > 0
        # A shape leaves play once it has been in the frame and is out of it again (or never came in).
        movers = [
            mover for mover in movers
            if areas[mover.track_id][0] > 0 or not mover.seen and frame - mover.born < _NEVER_ENTERED_FRAMES
        ]


def format_gt_line(frame: int, obj: VideoObject, min_visibility: float = DEFAULT_MIN_VISIBILITY) -> str:
    """``frame,id,x,y,w,h,consider,class,visibility`` for one object (see the module docstring)."""
    x1, y1, x2, y2 = obj.box
    consider = int(obj.visibility >= min_visibility)
    return f"{frame},{obj.track_id},{x1},{y1},{x2 - x1},{y2 - y1},{consider},{obj.label},{obj.visibility:.3f}"


def make_shapes_videos(
    out_dir: str | Path,
    *,
    num_sequences: int = 5,
    num_frames: int = 300,
    size: int = 320,
    seed: int = 0,
    object_sizes: tuple[float, float] = DEFAULT_VIDEO_OBJECT_SIZES,
    max_objects: int = _MAX_OBJECTS,
    min_visibility: float = DEFAULT_MIN_VISIBILITY,
) -> list[Path]:
    """Writes ``num_sequences`` sequences (see the module docstring); writes nothing outside ``out_dir``.

    Args:
        out_dir: output folder (created; existing files with the same names are overwritten).
        num_sequences: sequences to write (>= 1), folders seq_000, seq_001, ...
        num_frames: frames per sequence (>= 1).
        size: frame side in pixels (>= 32).
        seed: random seed; the same arguments give identical ground truth and frames.
        object_sizes: (smallest, largest) shape extent as fractions of ``size``.
        max_objects: most shapes in a frame at once.
        min_visibility: objects with less of them visible are marked 0 (don't care) in gt.txt's column 7.

    Returns:
        The sequence folders, each holding video.mp4, gt/gt.txt and seqinfo.ini.

    Raises:
        ValueError: a count below 1, a size below 32, object sizes outside 0 < min <= max <= 1, or a
            min_visibility outside 0..1.
        OSError: OpenCV cannot write an mp4v video here.
    """
    if num_sequences < 1:
        raise ValueError(f"make_shapes_videos needs num_sequences >= 1, got {num_sequences}")
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"min_visibility is a fraction of the shape, 0..1, got {min_visibility}")
    root = Path(out_dir)
    folders = []
    for index in range(num_sequences):
        folder = root / f"seq_{index:03d}"
        (folder / "gt").mkdir(parents=True, exist_ok=True)
        video_path = folder / "video.mp4"
        writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), FRAME_RATE, (size, size))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write {video_path} with the mp4v codec; install opencv-python-headless "
                          "from PyPI (its wheels include FFmpeg)")
        lines = []
        try:
            frames = render_shapes_sequence(seed, index, num_frames=num_frames, size=size,
                                            object_sizes=object_sizes, max_objects=max_objects)
            for frame, (image, objects, _) in enumerate(frames, start=1):
                writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                lines.extend(format_gt_line(frame, obj, min_visibility) for obj in objects)
        finally:
            writer.release()
        (folder / "gt" / "gt.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        (folder / "seqinfo.ini").write_text(
            f"[Sequence]\nname={folder.name}\nframeRate={FRAME_RATE}\nseqLength={num_frames}\n"
            f"imWidth={size}\nimHeight={size}\n",
            encoding="utf-8",
        )
        folders.append(folder)
    return folders


def _pick_colour(rng: np.random.Generator, cells: np.ndarray) -> np.ndarray:
    """A fill colour far from every cell of the (8 x 8 downscaled) background, the best of 20 draws otherwise."""
    best, best_distance = None, -1.0
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        distance = float(np.linalg.norm(cells - colour, axis=1).min())
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= _MIN_COLOUR_DISTANCE:
            break
    return best


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / (np.linalg.norm(vector) + 1e-9)
