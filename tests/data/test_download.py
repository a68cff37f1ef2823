"""data/download.py (ssdlite-download): argument handling, checksum verification and extraction, on local file://
archives only."""

from __future__ import annotations

import hashlib
import io
import tarfile
import types
import zipfile

import pytest

from ssdlite.data import download as library

from .scene import load_script


@pytest.fixture(scope="module")
def download():
    """The script's ``main`` with the library's archive table (the one a test patches)."""
    return types.SimpleNamespace(main=load_script("data/download.py").main, Archive=library.Archive,
                                 ARCHIVES=library.ARCHIVES)


def make_tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def archive_entry(download, path, *, md5=None, size=None):
    data = path.read_bytes()
    return download.Archive(
        url=path.as_uri(),
        size=len(data) if size is None else size,
        md5=hashlib.md5(data).hexdigest() if md5 is None else md5,
    )


def test_official_table(download):
    voc = {archive.file_name: archive.md5 for archive in download.ARCHIVES["voc"]}
    assert voc == {
        "VOCtrainval_06-Nov-2007.tar": "c52e279531787c972589f7e41ab4ae64",
        "VOCtest_06-Nov-2007.tar": "b6e924de25625d8de591ea690078ad9f",
        "VOCtrainval_11-May-2012.tar": "6cd6e144f989b92b3379bac3b3de84fd",
    }
    coco = download.ARCHIVES["coco"]
    assert [archive.file_name for archive in coco] == ["train2017.zip", "val2017.zip", "annotations_trainval2017.zip"]
    for archive in coco + download.ARCHIVES["voc"]:
        assert archive.url.startswith(("http://images.cocodataset.org/", "http://host.robots.ox.ac.uk/pascal/VOC/"))
        assert archive.size > 100_000_000 and (archive.md5 is None or len(archive.md5) == 32)


def test_dry_run_touches_nothing(download, tmp_path, capsys):
    root = tmp_path / "data"
    assert download.main(["voc", "--root", str(root), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("would download") == 3 and "c52e279531787c972589f7e41ab4ae64" in printed
    assert not root.exists()
    assert download.main(["coco", "--root", str(root), "--dry-run", "--only", "val2017.zip"]) == 0
    assert capsys.readouterr().out.count("would download") == 1


def test_argument_errors(download, tmp_path, capsys):
    with pytest.raises(SystemExit) as missing_root:
        download.main(["coco"])
    assert missing_root.value.code == 2
    with pytest.raises(SystemExit) as unknown:
        download.main(["imagenet", "--root", str(tmp_path)])
    assert unknown.value.code == 2
    assert download.main(["coco", "--root", str(tmp_path), "--only", "val.zip", "--dry-run"]) == 2  # bad input
    assert "no archive ['val.zip']" in capsys.readouterr().err


def test_download_verify_extract_and_skip_when_done(download, tmp_path, monkeypatch, capsys):
    (tmp_path / "server").mkdir()
    source = make_tar(tmp_path / "server" / "VOCfake.tar", {"VOCdevkit/VOC2007/Annotations/000001.xml": b"<annotation/>"})
    monkeypatch.setitem(download.ARCHIVES, "voc", [archive_entry(download, source)])
    root = tmp_path / "data"
    assert download.main(["voc", "--root", str(root)]) == 0
    assert (root / "VOCdevkit/VOC2007/Annotations/000001.xml").read_bytes() == b"<annotation/>"
    assert (root / "VOCfake.tar").is_file() and not list(root.glob("*.part"))
    capsys.readouterr()
    source.unlink()  # a second run must neither download nor extract again
    assert download.main(["voc", "--root", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "already downloaded and verified" in printed and "already extracted" in printed


@pytest.mark.parametrize("bad", ["md5", "size"])
def test_checksum_or_size_mismatch_fails_and_leaves_nothing(download, tmp_path, monkeypatch, capsys, bad):
    source = make_tar(tmp_path / "VOCfake.tar", {"a.txt": b"hello"})
    entry = archive_entry(download, source, **({"md5": "0" * 32} if bad == "md5" else {"size": 12345}))
    monkeypatch.setitem(download.ARCHIVES, "voc", [entry])
    root = tmp_path / "data"
    assert download.main(["voc", "--root", str(root)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and ("MD5" in error if bad == "md5" else "bytes" in error)
    assert list(root.iterdir()) == []  # neither the .part file nor an extracted member


def test_unknown_md5_checks_size_only_and_extracts_zip(download, tmp_path, monkeypatch, capsys):
    source = tmp_path / "val2017.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("val2017/000000000139.jpg", b"jpeg bytes")
    monkeypatch.setitem(download.ARCHIVES, "coco", [download.Archive(source.as_uri(), source.stat().st_size, None)])
    root = tmp_path / "coco"
    assert download.main(["coco", "--root", str(root), "--delete-archives"]) == 0
    assert "checked its size only" in capsys.readouterr().out
    assert (root / "val2017/000000000139.jpg").read_bytes() == b"jpeg bytes"
    assert not (root / "val2017.zip").exists()


def test_archive_escaping_the_root_is_refused(download, tmp_path, monkeypatch, capsys):
    source = tmp_path / "evil.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("../outside.txt", b"x")
    monkeypatch.setitem(download.ARCHIVES, "coco", [archive_entry(download, source)])
    assert download.main(["coco", "--root", str(tmp_path / "coco")]) == 2
    assert "outside" in capsys.readouterr().err and not (tmp_path / "outside.txt").exists()


def test_unreachable_url_is_one_line_error(download, tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere.tar"
    monkeypatch.setitem(download.ARCHIVES, "voc", [download.Archive(missing.as_uri(), 10, "0" * 32)])
    assert download.main(["voc", "--root", str(tmp_path / "data")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("download.py: error: cannot download file://") and error.count("\n") == 1
