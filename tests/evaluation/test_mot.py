"""MOT evaluation (ssdlite.evaluation.mot, ssdlite-eval-mot): perfect results score 1, an injected ID switch counts
once, don't-care ground truth is neither missed nor a false positive, folders give per-sequence and overall figures,
and a malformed file is a one-line error with its line number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssdlite.commands import eval_mot
from ssdlite.evaluation.mot import evaluate_mot, iou_distances, read_mot_file

mm = pytest.importorskip("motmetrics")

FRAMES = 40


def _tracks() -> list[tuple[int, int, float, float, float, float]]:
    """Three tracks over 40 frames: 1 and 2 cross (their boxes overlap around frame 20), 3 appears at frame 10."""
    rows = []
    for frame in range(1, FRAMES + 1):
        rows.append((frame, 1, 10.0 + 4 * frame, 50.0, 30.0, 30.0))
        rows.append((frame, 2, 170.0 - 4 * frame, 60.0, 30.0, 30.0))
        if frame >= 10:
            rows.append((frame, 3, 100.0, 150.0 - frame, 40.0, 20.0))
    return rows


def _write(path: Path, rows, *, gt: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tail = ",1,1,1.0" if gt else ",0.9,-1,-1,-1"
    path.write_text("".join(f"{f},{i},{x:g},{y:g},{w:g},{h:g}{tail}\n" for f, i, x, y, w, h in rows))
    return path


def _gt_track_frames() -> int:
    return len(_tracks())


def test_ground_truth_against_itself_is_perfect(tmp_path):
    gt = _write(tmp_path / "gt.txt", _tracks(), gt=True)
    results = _write(tmp_path / "res.txt", _tracks(), gt=False)
    metrics = evaluate_mot(gt, results)["overall"]
    assert metrics["mota"] == 1.0 and metrics["idf1"] == 1.0
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    assert metrics["num_switches"] == 0 and metrics["num_fragmentations"] == 0
    assert metrics["num_objects"] == _gt_track_frames() and metrics["num_unique_objects"] == 3


def test_renaming_every_id_changes_nothing(tmp_path):
    gt = _write(tmp_path / "gt.txt", _tracks(), gt=True)
    renamed = [(f, {1: 7, 2: 3, 3: 12}[i], x, y, w, h) for f, i, x, y, w, h in _tracks()]
    metrics = evaluate_mot(gt, _write(tmp_path / "res.txt", renamed, gt=False))["overall"]
    assert (metrics["mota"], metrics["idf1"], metrics["num_switches"]) == (1.0, 1.0, 0)


def test_one_injected_id_switch_counts_exactly_once(tmp_path):
    """Track 2 takes a new id from frame 25 on (what a tracker does when it loses and re-creates a track)."""
    gt = _write(tmp_path / "gt.txt", _tracks(), gt=True)
    switched = [(f, 99 if i == 2 and f >= 25 else i, x, y, w, h) for f, i, x, y, w, h in _tracks()]
    metrics = evaluate_mot(gt, _write(tmp_path / "res.txt", switched, gt=False))["overall"]
    assert metrics["num_switches"] == 1
    assert metrics["mota"] == pytest.approx(1 - 1 / _gt_track_frames())
    assert metrics["idf1"] < 1.0 and metrics["recall"] == 1.0 and metrics["precision"] == 1.0
    assert metrics["switches_per_100"] == pytest.approx(100 / _gt_track_frames())


def test_two_tracks_swapping_ids_are_two_switches(tmp_path):
    """A swap of two tracks' ids is one switch for each ground-truth track, as py-motmetrics counts them."""
    gt = _write(tmp_path / "gt.txt", _tracks(), gt=True)
    swapped = [(f, {1: 2, 2: 1}.get(i, i) if f >= 25 else i, x, y, w, h) for f, i, x, y, w, h in _tracks()]
    assert evaluate_mot(gt, _write(tmp_path / "res.txt", swapped, gt=False))["overall"]["num_switches"] == 2


def test_misses_false_positives_and_a_fragmentation(tmp_path):
    gt = _write(tmp_path / "gt.txt", _tracks(), gt=True)
    rows = [row for row in _tracks() if not (row[1] == 3 and 20 <= row[0] < 25)]  # track 3 lost for 5 frames
    rows.append((5, 50, 250.0, 250.0, 20.0, 20.0))  # a box where there is nothing
    rows.append((6, 1, 200.0, 200.0, 20.0, 20.0))  # frame 6: track 1's box far off (a miss and a false positive)
    rows.remove((6, 1, 34.0, 50.0, 30.0, 30.0))
    metrics = evaluate_mot(gt, _write(tmp_path / "res.txt", rows, gt=False))["overall"]
    assert metrics["num_misses"] == 5 + 1 and metrics["num_false_positives"] == 2
    assert metrics["num_fragmentations"] == 2 and metrics["num_switches"] == 0
    n = _gt_track_frames()
    assert metrics["mota"] == pytest.approx(1 - 8 / n) and metrics["recall"] == pytest.approx(1 - 6 / n)


def test_boxes_below_the_iou_threshold_do_not_match(tmp_path):
    gt = _write(tmp_path / "gt.txt", [(1, 1, 0.0, 0.0, 10.0, 10.0), (1, 2, 100.0, 0.0, 10.0, 10.0)], gt=True)
    # IoU 5/15 = 0.33 with box 1 (no match) and 10 x 6 inside box 2: IoU 0.6 (a match)
    results = _write(tmp_path / "res.txt", [(1, 1, 5.0, 0.0, 10.0, 10.0), (1, 2, 100.0, 0.0, 10.0, 6.0)], gt=False)
    metrics = evaluate_mot(gt, results)["overall"]
    assert (metrics["num_misses"], metrics["num_false_positives"]) == (1, 1)
    assert evaluate_mot(gt, results, iou_threshold=0.3)["overall"]["num_misses"] == 0


def test_iou_distances_are_py_motmetrics_iou_matrix(monkeypatch):
    """The same numbers as py-motmetrics' own function, run here with the np.asfarray numpy 2 removed put back."""
    rng = np.random.default_rng(0)
    objects = np.concatenate([rng.uniform(0, 50, (6, 2)), rng.uniform(20, 40, (6, 2))], axis=1)
    hypotheses = objects[[0, 2, 4, 5]] + rng.normal(0, 3, (4, 4))
    monkeypatch.setattr(np, "asfarray", lambda a: np.asarray(a, dtype=float), raising=False)
    for max_iou in (0.5, 0.8):
        expected = mm.distances.iou_matrix(objects, hypotheses, max_iou=max_iou)
        assert 3 <= np.isfinite(expected).sum() < expected.size  # some pairs match, some do not
        np.testing.assert_array_equal(iou_distances(objects, hypotheses, max_iou), expected)


def test_dont_care_ground_truth_is_neither_missed_nor_a_false_positive(tmp_path):
    gt_path = tmp_path / "gt.txt"
    lines = [f"{f},1,{10 + 4 * f},50,30,30,1,1,1.0" for f in range(1, 11)]
    lines += [f"{f},2,200,200,20,20,0,2,0.2" for f in range(1, 11)]  # column 7 = 0: don't care
    gt_path.write_text("\n".join(lines) + "\n")
    covered = [(f, 1, 10.0 + 4 * f, 50.0, 30.0, 30.0) for f in range(1, 11)]
    covered += [(f, 2, 200.0, 200.0, 20.0, 20.0) for f in range(1, 6)]  # half of the don't-care frames
    metrics = evaluate_mot(gt_path, _write(tmp_path / "res.txt", covered, gt=False))["overall"]
    assert metrics["num_objects"] == 10 and metrics["num_unique_objects"] == 1
    assert (metrics["num_misses"], metrics["num_false_positives"], metrics["mota"]) == (0, 0, 1.0)


def test_folders_report_each_sequence_and_overall(tmp_path, capsys):
    gt_root, results_root = tmp_path / "gt", tmp_path / "results"
    _write(gt_root / "seq_a" / "gt" / "gt.txt", _tracks(), gt=True)
    _write(gt_root / "seq_b" / "gt" / "gt.txt", _tracks(), gt=True)
    _write(results_root / "seq_a.txt", _tracks(), gt=False)
    _write(results_root / "seq_b.txt", [(f, 99 if i == 2 and f >= 25 else i, x, y, w, h)
                                        for f, i, x, y, w, h in _tracks()], gt=False)
    status = eval_mot.main(["--gt", str(gt_root), "--results", str(results_root), "--json", str(tmp_path / "m.json")],
                           prog="eval_mot.py")
    assert status == 0
    table = capsys.readouterr().out
    assert [line.split()[0] for line in table.splitlines()[:4]] == ["sequence", "seq_a", "seq_b", "OVERALL"]
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["sequences"]["seq_a"]["num_switches"] == 0 and saved["sequences"]["seq_b"]["num_switches"] == 1
    assert saved["overall"]["num_switches"] == 1 and saved["overall"]["num_objects"] == 2 * _gt_track_frames()
    assert saved["overall"]["mota"] == pytest.approx(1 - 1 / (2 * _gt_track_frames()))

    (results_root / "seq_b.txt").unlink()
    assert eval_mot.main(["--gt", str(gt_root), "--results", str(results_root)], prog="eval_mot.py") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("eval_mot.py: error: no results for sequence seq_b") and "seq_b.txt" in line


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("3,1,10,10,20", "5 fields, expected at least 6"),
        ("3,one,10,10,20,20,1,1,1", "id 'one' is not a number"),
        ("0,1,10,10,20,20,1,1,1", "frame '0' is not an integer >= 1"),
        ("3,1,10,10,-20,20,1,1,1", "box width and height must be > 0"),
        ("3,1.5,10,10,20,20,1,1,1", "id '1.5' is not an integer"),
        ("2,1,10,10,20,20,1,1,1", "frame 2 has id 1 twice (also on line 2)"),
    ],
)
def test_a_malformed_ground_truth_line_is_a_one_line_error_with_its_number(tmp_path, capsys, bad_line, reason):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,20,1,1,1\n2,1,12,10,20,20,1,1,1\n\n" + bad_line + "\n5,1,10,10,20,20,1,1,1\n")
    results = _write(tmp_path / "res.txt", [(1, 1, 10.0, 10.0, 20.0, 20.0)], gt=False)
    assert eval_mot.main(["--gt", str(gt), "--results", str(results)], prog="eval_mot.py") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"eval_mot.py: error: {gt}, line 4: {reason}")
    assert "frame,id,x,y,w,h[,consider,class,visibility]" in line and repr(bad_line)[1:-1] in line


def test_results_read_the_tracker_output_format_and_ignore_its_score_columns(tmp_path):
    path = tmp_path / "res.txt"
    path.write_text("1,4,10.5,20.25,30,40,0.87,-1,-1,-1\n2,4,11,20,30,40,0.5,-1,-1,-1\n")
    tracks = read_mot_file(path, ground_truth=False)
    assert tracks.frames.tolist() == [1, 2] and tracks.ids.tolist() == [4, 4]
    np.testing.assert_array_equal(tracks.boxes[0], [10.5, 20.25, 30, 40])
    assert tracks.consider.all()


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("3,1e300,10,10,20,20,1,1,1", "id '1e300' is too large (ids are 64-bit integers)"),
        ("1e300,1,10,10,20,20,1,1,1", "frame '1e300' is too large (frames are 64-bit integers)"),
        ("3,-1e19,10,10,20,20,1,1,1", "id '-1e19' is too large (ids are 64-bit integers)"),
    ],
)
def test_a_frame_or_id_beyond_int64_is_a_line_error_not_an_overflow(tmp_path, capsys, bad_line, reason):
    for ground_truth in (True, False):
        bad = tmp_path / "bad.txt"
        bad.write_text("1,1,10,10,20,20,1,1,1\n" + bad_line + "\n")
        good = _write(tmp_path / "good.txt", [(1, 1, 10.0, 10.0, 20.0, 20.0)], gt=not ground_truth)
        gt, results = (bad, good) if ground_truth else (good, bad)
        assert eval_mot.main(["--gt", str(gt), "--results", str(results)], prog="eval_mot.py") == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"eval_mot.py: error: {bad}, line 2: {reason}; MOT Challenge "), line


def test_a_box_narrower_than_a_hundredth_of_a_pixel_goes_from_the_writer_through_eval_mot(tmp_path, capsys):
    """ssdlite-detect --mot wrote w=0.00 for a 0.004 px wide box, and eval_mot then refused the whole file."""
    from ssdlite_runtime.tracking import mot_lines

    tracks = {"boxes": np.array([[10, 20, 10.004, 60], [30, 30, 60, 30.002], [70, 5, 70, 25], [90, 8, 120, 40]],
                                np.float32),
              "scores": np.array([0.9, 0.8, 0.7, 0.6], np.float32), "track_ids": np.array([1, 2, 3, 4])}
    lines = mot_lines(1, tracks)
    assert [line.split(",")[4:6] for line in lines] == [["0.004", "40.00"], ["30.00", "0.002"], ["0.00", "20.00"],
                                                        ["30.00", "32.00"]]
    results = tmp_path / "tracks.txt"
    results.write_text("\n".join(lines) + "\n")
    read = read_mot_file(results, ground_truth=False)
    np.testing.assert_allclose(read.boxes[:, 2:], [[0.004, 40], [30, 0.002], [0, 20], [30, 32]])

    gt = _write(tmp_path / "gt.txt", [(1, 4, 90.0, 8.0, 30.0, 32.0)], gt=True)
    assert eval_mot.main(["--gt", str(gt), "--results", str(results)], prog="eval_mot.py") == 0
    metrics = evaluate_mot(gt, results)["overall"]
    # The three thin or empty boxes overlap nothing: false positives, as in py-motmetrics and TrackEval.
    assert (metrics["num_false_positives"], metrics["num_misses"], metrics["recall"]) == (3, 0, 1.0)
    assert "error" not in capsys.readouterr().err


def test_an_empty_ground_truth_box_is_a_miss_and_a_negative_one_an_error(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,20,20,1,1,1\n1,2,50,50,0,20,1,1,1\n")
    results = _write(tmp_path / "res.txt", [(1, 1, 10.0, 10.0, 20.0, 20.0)], gt=False)
    metrics = evaluate_mot(gt, results)["overall"]
    assert (metrics["num_objects"], metrics["num_misses"], metrics["num_false_positives"]) == (2, 1, 0)
    gt.write_text("1,1,10,10,20,20,1,1,1\n1,2,50,50,-0.5,20,1,1,1\n")
    with pytest.raises(ValueError, match=r"gt\.txt, line 2: box width and height must be > 0, or 0 for an empty box; "
                                         r"got w=-0\.5, h=20"):
        evaluate_mot(gt, results)
