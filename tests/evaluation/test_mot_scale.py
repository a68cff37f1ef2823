"""MOT evaluation at scale: the lines are grouped by frame once (no pass over every line for each frame, which
made 100k frames take minutes), with the same events as the per-frame pass; the fast reader (``np.loadtxt``)
and the line-by-line reader read the same files the same way. Work is counted, never timed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssdlite.evaluation import mot
from ssdlite.evaluation.mot import MOTTracks, evaluate_sequence, iou_distances, read_mot_file

mm = pytest.importorskip("motmetrics")

_COMPARISONS = (np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal)


class CountingFrames(np.ndarray):
    """A frame column that counts the elements every comparison of it touches."""

    compared = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc in _COMPARISONS:
            CountingFrames.compared += max(np.size(value) for value in inputs)
        plain = tuple(value.view(np.ndarray) if isinstance(value, CountingFrames) else value for value in inputs)
        return getattr(ufunc, method)(*plain, **kwargs)


def sequence(frames: int, boxes: int, *, seed: int, ground_truth: bool) -> MOTTracks:
    """``boxes`` tracks moving right over ``frames`` frames, lines shuffled; results drift, switch ids and skip
    frames, ground truth has don't-care boxes."""
    rng = np.random.default_rng(seed)
    frame = np.repeat(np.arange(1, frames + 1), boxes)
    track = np.tile(np.arange(1, boxes + 1), frames)
    xywh = np.column_stack([frame * 2.0 + rng.uniform(0, 3, len(frame)), track * 50.0, np.full(len(frame), 30.0),
                            np.full(len(frame), 40.0)])
    consider = np.ones(len(frame), dtype=bool)
    keep = np.ones(len(frame), dtype=bool)
    if ground_truth:
        consider = rng.random(len(frame)) > 0.1
    else:
        track = np.where((frame > frames // 2) & (track == 1), 99, track)  # an id switch
        keep = rng.random(len(frame)) > 0.1  # misses, and frames with no result at all
        xywh[:, 0] += rng.normal(0, 8, len(frame))  # some boxes drift out of reach: misses and false positives
    order = rng.permutation(np.flatnonzero(keep))
    return MOTTracks(path=Path("generated.txt"), frames=frame[order], ids=track[order], boxes=xywh[order],
                     consider=consider[order])


def per_frame_pass(gt: MOTTracks, results: MOTTracks):
    """The accumulator as it was built before lines were grouped: a mask over every line for each frame (the
    oracle for the grouped version)."""
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame in np.union1d(gt.frames, results.frames):
        in_gt, in_results = gt.frames == frame, results.frames == frame
        gt_boxes, gt_ids, gt_consider = gt.boxes[in_gt], gt.ids[in_gt], gt.consider[in_gt]
        hyp_boxes, hyp_ids = results.boxes[in_results], results.ids[in_results]
        if not gt_consider.all() and len(hyp_ids):
            distances = iou_distances(gt_boxes, hyp_boxes)
            rows, columns = mm.lap.linear_sum_assignment(distances)
            matched = np.isfinite(distances[rows, columns])
            keep = np.ones(len(hyp_ids), dtype=bool)
            keep[columns[matched & ~gt_consider[rows]]] = False
            hyp_boxes, hyp_ids = hyp_boxes[keep], hyp_ids[keep]
        gt_boxes, gt_ids = gt_boxes[gt_consider], gt_ids[gt_consider]
        accumulator.update(gt_ids, hyp_ids, iou_distances(gt_boxes, hyp_boxes), frameid=int(frame))
    return accumulator


def test_grouped_frames_give_the_events_of_the_per_frame_pass():
    gt = sequence(120, 4, seed=1, ground_truth=True)
    results = sequence(130, 4, seed=2, ground_truth=False)  # 10 frames of results beyond the ground truth
    events = evaluate_sequence(gt, results).mot_events
    expected = per_frame_pass(gt, results).mot_events
    assert {"SWITCH", "MISS", "FP", "MATCH"} <= set(events["Type"])
    assert len(events) == len(expected)
    assert events.equals(expected)


def test_each_line_is_compared_a_bounded_number_of_times_not_once_per_frame():
    """2,000 frames: the per-frame pass compared 2 x 2,000 x 4,000 frame numbers (16 million); grouping compares
    each line about once."""
    gt, results = (sequence(2000, 2, seed=seed, ground_truth=seed == 3) for seed in (3, 4))
    counted = [MOTTracks(path=tracks.path, frames=tracks.frames.view(CountingFrames), ids=tracks.ids,
                         boxes=tracks.boxes, consider=tracks.consider) for tracks in (gt, results)]
    CountingFrames.compared = 0
    accumulator = evaluate_sequence(*counted)
    lines = len(gt.frames) + len(results.frames)
    assert 0 < CountingFrames.compared <= 2 * lines
    assert accumulator.events.index.get_level_values("FrameId").nunique() == 2000  # every frame, once


def write_rows(path: Path, rows: np.ndarray, *, separator: str, extra: str = "") -> Path:
    path.write_text("".join(separator.join(f"{value:g}" for value in row) + extra + "\n" for row in rows))
    return path


@pytest.mark.parametrize("ground_truth", [True, False])
def test_the_fast_reader_and_the_line_reader_read_the_same(tmp_path, monkeypatch, ground_truth):
    rng = np.random.default_rng(5)
    rows = np.column_stack([np.repeat(np.arange(1, 51), 3), np.tile([4, 9, 2], 50), rng.uniform(0, 500, (150, 2)),
                            rng.uniform(1, 80, (150, 2)), rng.integers(0, 2, 150)]).round(2)
    rows[7, 4] = 0.0  # an empty box is read as well
    line_reads = []
    parse_lines = mot._parse_lines
    monkeypatch.setattr(mot, "_parse_lines", lambda *args: line_reads.append(args[0].name) or parse_lines(*args))

    commas = read_mot_file(write_rows(tmp_path / "commas.txt", rows, separator=",", extra=",1,0.5"),
                           ground_truth=ground_truth)
    spaces = read_mot_file(write_rows(tmp_path / "spaces.txt", rows, separator=" "), ground_truth=ground_truth)
    six = read_mot_file(write_rows(tmp_path / "six.txt", rows[:, :6], separator=", "), ground_truth=ground_truth)
    # The comma-separated files took the fast path, but for ground truth without column 7 (all considered).
    assert line_reads == ["spaces.txt", "six.txt"] if ground_truth else ["spaces.txt"]
    for tracks in (commas, spaces):
        np.testing.assert_array_equal(tracks.frames, rows[:, 0].astype(np.int64))
        np.testing.assert_array_equal(tracks.ids, rows[:, 1].astype(np.int64))
        np.testing.assert_array_equal(tracks.boxes, rows[:, 2:6])
        np.testing.assert_array_equal(tracks.consider, rows[:, 6] != 0 if ground_truth else np.ones(150, bool))
        assert tracks.frames.dtype == tracks.ids.dtype == np.int64
    assert six.consider.all() and np.array_equal(six.boxes, rows[:, 2:6])


def test_a_repeated_frame_and_id_far_into_a_large_file_names_both_lines(tmp_path):
    rows = np.column_stack([np.arange(1, 20001), np.ones(20000), np.full((20000, 4), 10.0)])
    rows[15000, 0] = rows[12000, 0]  # line 15001 repeats frame 12001, id 1 of line 12001
    path = write_rows(tmp_path / "results.txt", rows, separator=",")
    with pytest.raises(mot.MOTFormatError, match=r"results\.txt, line 15001: frame 12001 has id 1 twice \(also on "
                                                 r"line 12001\)"):
        read_mot_file(path, ground_truth=False)
