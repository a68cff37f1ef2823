"""Shapes video sequences: the written video's frames show the shapes where gt.txt puts their boxes, shapes enter,
leave and hide each other, the files are deterministic, and the command writes the MOT layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite.commands import make_shapes as make_shapes_command
from ssdlite.data.synthetic_video import format_gt_line, make_shapes_videos, render_shapes_sequence

SIZE = 128
FRAMES = 150
SEED = 0


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """One written sequence, its decoded frames, and the renderer's frames, objects and owner maps."""
    root = tmp_path_factory.mktemp("video")
    [folder] = make_shapes_videos(root, num_sequences=1, num_frames=FRAMES, size=SIZE, seed=SEED)
    capture = cv2.VideoCapture(str(folder / "video.mp4"))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    rendered = list(render_shapes_sequence(SEED, 0, num_frames=FRAMES, size=SIZE))
    gt = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",", ndmin=2)
    return {"folder": folder, "decoded": decoded, "rendered": rendered, "gt": gt}


def _touches_border(box) -> bool:
    x1, y1, x2, y2 = box
    return x1 == 0 or y1 == 0 or x2 == SIZE or y2 == SIZE


def test_layout_and_ground_truth_lines(sequence):
    folder = sequence["folder"]
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "gt/gt.txt", "seqinfo.ini", "video.mp4"]
    assert f"seqLength={FRAMES}" in (folder / "seqinfo.ini").read_text()
    expected = [format_gt_line(frame, obj) for frame, (_, objects, _) in enumerate(sequence["rendered"], 1)
                for obj in objects]
    assert (folder / "gt" / "gt.txt").read_text().splitlines() == expected
    gt = sequence["gt"]
    assert gt.shape[1] == 9 and set(np.unique(gt[:, 7])) <= {1, 2, 3, 4}
    assert ((gt[:, 8] > 0) & (gt[:, 8] <= 1)).all()
    np.testing.assert_array_equal(gt[:, 6], gt[:, 8] >= 0.5)  # consider = visible enough
    assert 0 < gt[:, 6].mean() < 1


def test_the_video_holds_the_rendered_frames_in_order(sequence):
    decoded, rendered = sequence["decoded"], sequence["rendered"]
    assert len(decoded) == FRAMES and decoded[0].shape == (SIZE, SIZE, 3)
    for index in (0, 40, 99, FRAMES - 1):
        error = np.abs(decoded[index].astype(np.float32) - rendered[index][0]).mean()
        assert error < 8, (index, error)  # mp4v is lossy
        other = rendered[index - 20][0]  # 20 frames apart the shapes have moved
        assert np.abs(decoded[index].astype(np.float32) - other).mean() > error + 1


def test_gt_boxes_match_the_shapes_drawn_in_the_video(sequence):
    """In the decoded frames, the pixels of each shape's fill colour near its box span that box, to 3 px: mp4v
    halves the colour resolution and blurs the thin tips of triangles and stars."""
    checked = 0
    for index in range(10, FRAMES, 20):
        frame = sequence["decoded"][index].astype(np.float32)
        _, objects, owner = sequence["rendered"][index]
        rows = sequence["gt"][sequence["gt"][:, 0] == index + 1]
        assert sorted(rows[:, 1].astype(int)) == sorted(obj.track_id for obj in objects)
        for obj in objects:
            [row] = rows[rows[:, 1] == obj.track_id]
            x, y, w, h = row[2:6].astype(int)
            if row[6] == 0:
                continue
            x1, y1, x2, y2 = max(x - 4, 0), max(y - 4, 0), min(x + w + 4, SIZE), min(y + h + 4, SIZE)
            # Only shapes whose neighbourhood no other shape reaches: another may have a similar colour.
            if np.isin(owner[y1:y2, x1:x2], [0, obj.track_id], invert=True).any():
                continue
            distance = np.linalg.norm(frame[y1:y2, x1:x2] - np.asarray(obj.colour, np.float32), axis=2)
            ys, xs = np.nonzero(distance < 60)
            found = (xs.min() + x1, ys.min() + y1, xs.max() + 1 + x1, ys.max() + 1 + y1)
            assert np.abs(np.subtract(found, (x, y, x + w, y + h))).max() <= 3, (index, obj, found)
            assert len(xs) >= 0.8 * obj.visible_area
            checked += 1
    assert checked >= 4


def test_shapes_enter_leave_and_hide_each_other(sequence):
    first, last, occluded = {}, {}, []
    for frame, (image, objects, owner) in enumerate(sequence["rendered"], start=1):
        for obj in objects:
            first.setdefault(obj.track_id, (frame, obj))
            last[obj.track_id] = (frame, obj)
            if obj.visible_area < obj.in_frame_area:
                occluded.append((frame, obj, image, owner))
    entering = [obj for frame, obj in first.values() if frame > 1 and _touches_border(obj.box)
                and obj.in_frame_area < obj.full_area]
    leaving = [obj for frame, obj in last.values() if frame < FRAMES and _touches_border(obj.box)]
    assert entering and leaving and len(occluded) >= 10
    # Where a shape is hidden, the pixels show the nearer shape: another id, drawn in that shape's colour.
    frame, obj, image, owner = occluded[len(occluded) // 2]
    [(_, objects, _)] = [sequence["rendered"][frame - 1]]
    x1, y1, x2, y2 = obj.box
    window = owner[y1:y2, x1:x2]
    nearer = [other for other in objects if other.track_id != obj.track_id and (window == other.track_id).any()]
    assert nearer
    mask = owner == nearer[0].track_id
    assert np.abs(image[mask].mean(axis=0) - nearer[0].colour).max() < 25


def test_same_arguments_give_identical_files_and_another_seed_differs(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    arguments = {"num_sequences": 2, "num_frames": 12, "size": 64}
    first = files(make_shapes_videos(tmp_path / "a", seed=3, **arguments)[0].parent)
    second = files(make_shapes_videos(tmp_path / "b", seed=3, **arguments)[0].parent)
    other = files(make_shapes_videos(tmp_path / "c", seed=4, **arguments)[0].parent)
    assert len(first) == 2 * 3 and first == second
    assert first["seq_000/gt/gt.txt"] != other["seq_000/gt/gt.txt"]
    assert first["seq_000/video.mp4"] != other["seq_000/video.mp4"]


def test_the_command_writes_the_sequences_and_rejects_still_options(tmp_path, capsys):
    out = tmp_path / "videos"
    assert make_shapes_command.main(["--video", "--out", str(out), "--num-sequences", "2", "--num-frames", "5",
                                     "--size", "64"], prog="make_shapes.py") == 0
    assert sorted(p.name for p in out.iterdir()) == ["seq_000", "seq_001"]
    assert max(int(line.split(",")[0]) for line in (out / "seq_001" / "gt" / "gt.txt").read_text().splitlines()) <= 5
    assert "wrote 2 sequences x 5 frames (64x64)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        make_shapes_command.main(["--video", "--out", str(out), "--num-train", "3"], prog="make_shapes.py")
    assert exit_info.value.code == 2
    assert "--num-train is for still images, not --video" in capsys.readouterr().err
