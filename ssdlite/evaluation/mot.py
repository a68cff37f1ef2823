"""How well a tracker follows objects: CLEAR MOT and identity metrics (MOTA, IDF1, ID switches, fragmentations,
precision, recall) through py-motmetrics, from MOT Challenge text files.

Files (one line per box, comma separated, as MOT Challenge and TrackEval read them):

- ground truth ``frame,id,x,y,w,h[,consider,class,visibility,...]``: frame >= 1 and id integers (64-bit), the box in
  pixels (x, y its top-left corner, w, h >= 0). A 0 in column 7 marks a don't-care object (MOT Challenge's
  convention for distractors; ssdlite.data.synthetic_video marks shapes that are mostly hidden or outside the frame):
  it is not counted as missed, and a result box matched to it is dropped rather than counted as a false positive.
  Columns 8 and 9 (class, visibility) are read by nothing here: the evaluation is class-agnostic, as the results
  carry no class.
- results ``frame,id,x,y,w,h[,score,...]`` (``ssdlite-detect --track --mot PATH`` writes
  ``frame,id,x,y,w,h,score,-1,-1,-1``); columns after the box are not read.

A box of zero width or height is empty: it overlaps nothing (py-motmetrics' and TrackEval's IoU are 0 for it), so a
result box of zero size is a false positive and a ground-truth one a miss; a negative size is an error.

In each frame, ground truth and result boxes are paired by IoU >= 0.5 (py-motmetrics' convention: the distance is
1 - IoU and pairs farther than 0.5 cannot match), keeping the previous frame's pairs where they still qualify; an ID
switch is a ground-truth track paired with another result id than last time it was paired. Result boxes are first
matched to the don't-care boxes (one Hungarian assignment over all ground-truth boxes of the frame, as TrackEval's
MOT Challenge preprocessing does) and those matched to one are removed.

Several sequences: :func:`evaluate_mot` takes a MOT Challenge folder (``GT/<seq>/gt/gt.txt``) and a results
folder (``RESULTS/<seq>.txt``) and reports every sequence and the overall figures (accumulated over all frames of
all sequences, as py-motmetrics' ``OVERALL``).

Cost: a file is read by ``np.loadtxt`` and its lines grouped by frame with one sort; the rest is py-motmetrics' own
per-frame ``MOTAccumulator.update`` (measured on the shared 2-core machine: 100,000 frames of one box in 26 s, 10,000
frames of 100 boxes in 25 s) and its event table, about 0.4 KB of memory per box (41,000 frames of 100 boxes, a 205 MB
results file: 101 s and 2.4 GB at the peak).

numpy 2: py-motmetrics 1.4.0's ``distances.iou_matrix`` calls ``np.asfarray``, which numpy 2 removed, so
:func:`iou_distances` is that function's body with ``np.asarray(..., dtype=float)`` instead, calling the same
``motmetrics.distances.boxiou``; everything else is py-motmetrics' own.
"""

from __future__ import annotations

import array
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ssdlite_runtime.plugins import require

__all__ = [
    "IOU_THRESHOLD",
    "METRICS",
    "MOTFormatError",
    "MOTTracks",
    "evaluate_mot",
    "evaluate_sequence",
    "format_mot_table",
    "iou_distances",
    "read_mot_file",
    "write_mot_json",
]

IOU_THRESHOLD = 0.5
"""Least IoU at which a result box can match a ground-truth box (MOT Challenge's and py-motmetrics' value)."""

METRICS: tuple[str, ...] = (
    "mota", "idf1", "num_switches", "num_fragmentations", "precision", "recall",
    "num_false_positives", "num_misses", "num_objects", "num_unique_objects",
)
"""py-motmetrics' names of the reported metrics (num_objects = ground-truth track-frames, num_unique_objects =
ground-truth tracks); :func:`evaluate_mot` adds ``switches_per_100`` = 100 * num_switches / num_objects."""

GT_FORMAT = "frame,id,x,y,w,h[,consider,class,visibility]"
RESULTS_FORMAT = "frame,id,x,y,w,h[,score,...]"
_INSTALL = "pip install 'ssdlite[tracking]'"
_SEPARATOR = re.compile(r"\s*,\s*|\s+")


class MOTFormatError(ValueError):
    """A line of a ground-truth or results file that is not MOT Challenge text (reported as bad input, exit 2)."""


@dataclass(frozen=True)
class MOTTracks:
    """The boxes of one MOT file: per line its frame, track id, box (x, y, w, h) and whether it counts (column 7 of
    a ground-truth file; always True for results)."""

    path: Path
    frames: np.ndarray  # int64 [N]
    ids: np.ndarray  # int64 [N]
    boxes: np.ndarray  # float64 [N, 4] x, y, w, h
    consider: np.ndarray  # bool [N]


def read_mot_file(path: str | Path, *, ground_truth: bool) -> MOTTracks:
    """Reads a MOT Challenge ground-truth or results file (see the module docstring), checking every line.

    A well-formed comma-separated file is read in one pass by ``np.loadtxt`` and checked with array operations;
    anything else (whitespace separators, a bad value, a repeated (frame, id)) is read again line by line, which
    accepts the same files and names the first bad line.

    Raises:
        FileNotFoundError: no such file.
        MOTFormatError: a line that is not MOT text (names the file, the line number, what was expected and what
            was found), or one (frame, id) on two lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{'ground truth' if ground_truth else 'results'} file not found: {path}")
    table = _load_table(path, ground_truth)
    if table is None or not _valid_table(table):
        table = _parse_lines(path, ground_truth)
    consider = np.ones(len(table), dtype=bool)
    if ground_truth and table.shape[1] > 6:
        consider = ~(table[:, 6] == 0)  # NaN: the line has no column 7
    return MOTTracks(
        path=path,
        frames=table[:, 0].astype(np.int64),
        ids=table[:, 1].astype(np.int64),
        boxes=np.ascontiguousarray(table[:, 2:6]),
        consider=consider,
    )


_INT64_LIMIT = 2.0**63
"""Frames and ids are stored as int64: a value must be below this in magnitude (and -2**63 itself is allowed)."""


def _load_table(path: Path, ground_truth: bool) -> np.ndarray | None:
    """float64 [N, 6] (results: the box, the columns after it unread) or [N, 7] (ground truth: with column 7) of a
    comma-separated file, read by ``np.loadtxt``; None when it cannot be read that way (another separator, a field
    that is not a number, a ground-truth line without column 7, not UTF-8): the line reader then decides."""
    columns = 7 if ground_truth else 6
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": an empty file is fine
            table = np.loadtxt(path, dtype=np.float64, delimiter=",", comments=None, usecols=range(columns),
                               ndmin=2, encoding="utf-8")
    except (ValueError, UnicodeError):
        return None
    return table if table.size else np.zeros((0, columns))


def _valid_table(table: np.ndarray) -> bool:
    """Whether every row is a valid MOT line and no (frame, id) repeats (else the line reader finds the line)."""
    frames, ids, sizes = table[:, 0], table[:, 1], table[:, 4:6]
    with np.errstate(invalid="ignore"):
        return bool(
            np.isfinite(table[:, :6]).all()
            and ((frames == np.floor(frames)) & (frames >= 1) & (frames < _INT64_LIMIT)).all()
            and ((ids == np.floor(ids)) & (np.abs(ids) < _INT64_LIMIT)).all()
            and (sizes >= 0).all()
            and _first_repeat(frames.astype(np.int64), ids.astype(np.int64)) is None
        )


def _first_repeat(frames: np.ndarray, ids: np.ndarray) -> tuple[int, int] | None:
    """(index of the first row, in file order, whose (frame, id) an earlier row has, index of that earlier row),
    or None when every (frame, id) is unique. One sort: O(N log N)."""
    if len(frames) < 2:
        return None
    order = np.lexsort((np.arange(len(frames)), ids, frames))  # by frame, then id, then position in the file
    same = (frames[order][1:] == frames[order][:-1]) & (ids[order][1:] == ids[order][:-1])
    if not same.any():
        return None
    repeats = order[1:][same]
    repeat = int(repeats.min())
    group_key = (frames[repeat], ids[repeat])
    earlier = order[np.flatnonzero((frames[order] == group_key[0]) & (ids[order] == group_key[1]))[0]]
    return repeat, int(earlier)


def _parse_lines(path: Path, ground_truth: bool) -> np.ndarray:
    """The table of :func:`_load_table`, read line by line (any of ``,`` and whitespace between fields); raises
    MOTFormatError at the first line that is not MOT text. Ground truth has a 7th column, NaN where a line has
    none."""
    kind, expected = ("ground truth", GT_FORMAT) if ground_truth else ("results", RESULTS_FORMAT)
    names = ("frame", "id", "x", "y", "w", "h", "consider") if ground_truth else ("frame", "id", "x", "y", "w", "h")
    values = array.array("d")  # 8 bytes a value, where a list of floats takes 32
    numbers = array.array("q")

    def fail(reason: str, number: int, text: str) -> MOTFormatError:
        shown = text if len(text) <= 80 else text[:77] + "..."
        return MOTFormatError(f"{path}, line {number}: {reason}; MOT Challenge {kind} lines are "
                              f"'{expected}' (got '{shown}'); fix the line or write the file again")

    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text:
                continue
            fields = _SEPARATOR.split(text)
            if len(fields) < 6:
                raise fail(f"{len(fields)} field{'s' if len(fields) != 1 else ''}, expected at least 6", number, text)
            row = []
            for name, field in zip(names, fields):
                try:
                    value = float(field)
                except ValueError:
                    raise fail(f"{name} '{field}' is not a number", number, text) from None
                if not math.isfinite(value):
                    raise fail(f"{name} '{field}' is not a finite number", number, text)
                row.append(value)
            frame, track_id, _, _, w, h = row[:6]
            if frame != int(frame) or frame < 1:
                raise fail(f"frame '{fields[0]}' is not an integer >= 1", number, text)
            if frame >= _INT64_LIMIT:
                raise fail(f"frame '{fields[0]}' is too large (frames are 64-bit integers)", number, text)
            if track_id != int(track_id):
                raise fail(f"id '{fields[1]}' is not an integer", number, text)
            if abs(track_id) >= _INT64_LIMIT:
                raise fail(f"id '{fields[1]}' is too large (ids are 64-bit integers)", number, text)
            if w < 0 or h < 0:
                raise fail(f"box width and height must be > 0, or 0 for an empty box; got w={fields[4]}, "
                           f"h={fields[5]}", number, text)
            if len(row) < len(names):
                row.append(math.nan)
            values.extend(row)
            numbers.append(number)
    table = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
    repeat = _first_repeat(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64))
    if repeat is not None:
        line, first = numbers[repeat[0]], numbers[repeat[1]]
        raise fail(f"frame {int(table[repeat[0], 0])} has id {int(table[repeat[0], 1])} twice (also on line {first})",
                   line, _line_text(path, line))
    return table


def _line_text(path: Path, number: int) -> str:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for current, line in enumerate(lines, start=1):
            if current == number:
                return line.strip()
    return ""


def iou_distances(objects: np.ndarray, hypotheses: np.ndarray, max_iou: float = 1 - IOU_THRESHOLD) -> np.ndarray:
    """py-motmetrics' ``distances.iou_matrix`` (1 - IoU between x, y, w, h boxes, NaN = cannot pair where above
    ``max_iou``), without the ``np.asfarray`` that numpy 2 removed: [N, K] float64 for N objects, K hypotheses."""
    import motmetrics as mm

    objects = np.asarray(objects, dtype=float).reshape(-1, 4)
    hypotheses = np.asarray(hypotheses, dtype=float).reshape(-1, 4)
    if not objects.size or not hypotheses.size:
        return np.empty((len(objects), len(hypotheses)))
    distances = 1 - mm.distances.boxiou(objects[:, None], hypotheses[None, :])
    return np.where(distances > max_iou, np.nan, distances)


def evaluate_sequence(gt: MOTTracks, results: MOTTracks, *, iou_threshold: float = IOU_THRESHOLD) -> Any:
    """The py-motmetrics ``MOTAccumulator`` of one sequence: every frame that has ground truth or results."""
    require(("motmetrics",), needed_by="MOT evaluation", install=_INSTALL)
    import motmetrics as mm

    max_distance = 1 - iou_threshold
    accumulator = mm.MOTAccumulator(auto_id=False)
    truth, hypotheses = _by_frame(gt), _by_frame(results)
    for frame in sorted(truth.spans.keys() | hypotheses.spans.keys()):
        start, stop = truth.spans.get(frame, (0, 0))
        gt_boxes, gt_ids, gt_consider = truth.boxes[start:stop], truth.ids[start:stop], truth.consider[start:stop]
        start, stop = hypotheses.spans.get(frame, (0, 0))
        hyp_boxes, hyp_ids = hypotheses.boxes[start:stop], hypotheses.ids[start:stop]
        if not gt_consider.all():
            if len(hyp_ids):
                distances = iou_distances(gt_boxes, hyp_boxes, max_distance)
                rows, columns = mm.lap.linear_sum_assignment(distances)
                matched = np.isfinite(distances[rows, columns])  # the solver pairs every row it can, even across NaN
                dropped = columns[matched & ~gt_consider[rows]]
                keep = np.ones(len(hyp_ids), dtype=bool)
                keep[dropped] = False
                hyp_boxes, hyp_ids = hyp_boxes[keep], hyp_ids[keep]
            gt_boxes, gt_ids = gt_boxes[gt_consider], gt_ids[gt_consider]
        accumulator.update(gt_ids, hyp_ids, iou_distances(gt_boxes, hyp_boxes, max_distance), frameid=frame)
    return accumulator


class _ByFrame(NamedTuple):
    """A file's lines sorted by frame (file order within a frame) and where each frame's lines are."""

    boxes: np.ndarray  # float64 [N, 4]
    ids: np.ndarray  # int64 [N]
    consider: np.ndarray  # bool [N]
    spans: dict[int, tuple[int, int]]  # frame -> (start, stop) of its lines in the arrays


def _by_frame(tracks: MOTTracks) -> _ByFrame:
    """One sort of all lines, so that a sequence costs O(N log N) rather than a pass over every line per frame."""
    order = np.argsort(tracks.frames, kind="stable")
    frames = tracks.frames[order]
    starts = np.flatnonzero(np.r_[True, frames[1:] != frames[:-1]]) if len(frames) else np.zeros(0, dtype=np.int64)
    stops = np.r_[starts[1:], len(frames)]
    spans = dict(zip(frames[starts].tolist(), zip(starts.tolist(), stops.tolist())))
    return _ByFrame(tracks.boxes[order], tracks.ids[order], tracks.consider[order], spans)


def evaluate_mot(
    gt: str | Path, results: str | Path, *, iou_threshold: float = IOU_THRESHOLD
) -> dict[str, Any]:
    """MOT metrics of one sequence (two files) or of a set (two folders, see the module docstring).

    Returns:
        ``{"iou_threshold": ..., "sequences": {name: metrics}, "overall": metrics}``, metrics being
        :data:`METRICS` plus ``switches_per_100`` (floats; None where undefined, e.g. MOTA without ground truth).

    Raises:
        FileNotFoundError: a missing file or folder, or a sequence without its results file.
        MOTFormatError: a malformed line (file, line number and the expected format).
        ValueError: a file given with a folder, or a ground-truth folder without sequences.
        MissingPackageError: py-motmetrics is not installed (names the pip extra).
    """
    require(("motmetrics",), needed_by="MOT evaluation", install=_INSTALL)
    import motmetrics as mm

    if not 0 < iou_threshold <= 1:
        raise ValueError(f"the IoU threshold must be in (0, 1], got {iou_threshold}")
    pairs = _sequence_files(Path(gt), Path(results))
    accumulators = [
        evaluate_sequence(read_mot_file(gt_file, ground_truth=True), read_mot_file(results_file, ground_truth=False),
                          iou_threshold=iou_threshold)
        for gt_file, results_file in pairs.values()
    ]
    names = list(pairs)
    summary = mm.metrics.create().compute_many(
        accumulators, metrics=list(METRICS), names=names, generate_overall=True
    )
    rows = {name: _metrics_row(summary.loc[name]) for name in names}
    return {"iou_threshold": iou_threshold, "sequences": rows, "overall": _metrics_row(summary.loc["OVERALL"])}


def format_mot_table(evaluation: dict[str, Any]) -> str:
    """A fixed-width table: one row per sequence, then OVERALL (when there are several)."""
    columns = [("MOTA", "mota", "{:.3f}"), ("IDF1", "idf1", "{:.3f}"), ("IDsw", "num_switches", "{:.0f}"),
               ("IDsw/100", "switches_per_100", "{:.2f}"), ("Frag", "num_fragmentations", "{:.0f}"),
               ("Prec", "precision", "{:.3f}"), ("Rec", "recall", "{:.3f}"), ("FP", "num_false_positives", "{:.0f}"),
               ("FN", "num_misses", "{:.0f}"), ("GT frames", "num_objects", "{:.0f}"),
               ("GT tracks", "num_unique_objects", "{:.0f}")]
    rows = list(evaluation["sequences"].items())
    if len(rows) > 1:
        rows.append(("OVERALL", evaluation["overall"]))
    cells = [["sequence", *(title for title, _, _ in columns)]]
    for name, metrics in rows:
        cells.append([name, *("-" if metrics[key] is None else style.format(metrics[key])
                              for _, key, style in columns)])
    widths = [max(len(row[index]) for row in cells) for index in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(width) if index == 0 else cell.rjust(width)
                       for index, (cell, width) in enumerate(zip(row, widths))) for row in cells]
    note = (f"IoU >= {evaluation['iou_threshold']:g} to match; IDsw/100 = ID switches per 100 ground-truth "
            "track-frames (GT frames)")
    return "\n".join([*lines, note])


def write_mot_json(evaluation: dict[str, Any], path: str | Path) -> Path:
    """Writes :func:`evaluate_mot`'s result as JSON (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
    return path


def _metrics_row(series: Any) -> dict[str, float | None]:
    row = {name: _number(series[name]) for name in METRICS}
    objects, switches = row["num_objects"], row["num_switches"]
    row["switches_per_100"] = 100 * switches / objects if objects else None
    return row


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _sequence_files(gt: Path, results: Path) -> dict[str, tuple[Path, Path]]:
    """{sequence name: (ground-truth file, results file)} for two files or two folders."""
    if not gt.exists():
        raise FileNotFoundError(f"ground truth not found: {gt}")
    if not results.exists():
        raise FileNotFoundError(f"results not found: {results}")
    if gt.is_file() != results.is_file():
        raise ValueError(f"--gt {gt} and --results {results}: give two MOT files, or two folders "
                         "(GT/<seq>/gt/gt.txt and RESULTS/<seq>.txt)")
    if gt.is_file():
        name = gt.parent.parent.name if gt.parent.name == "gt" and gt.parent.parent.name else gt.stem
        return {name: (gt, results)}
    sequences = sorted(path.parent.parent for path in gt.glob("*/gt/gt.txt"))
    if not sequences:
        raise ValueError(f"no sequences in {gt}: a MOT Challenge folder holds <seq>/gt/gt.txt "
                         "(ssdlite-make-shapes --video writes one)")
    pairs = {}
    for sequence in sequences:
        results_file = results / f"{sequence.name}.txt"
        if not results_file.is_file():
            raise FileNotFoundError(f"no results for sequence {sequence.name}: expected {results_file} "
                                    f"(one <seq>.txt per folder of {gt})")
        pairs[sequence.name] = (sequence / "gt" / "gt.txt", results_file)
    return pairs
