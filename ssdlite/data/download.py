"""Download, verify and extract COCO 2017 or PASCAL VOC 2007+2012 from their official servers.

The command is ``ssdlite-download`` (``python data/download.py`` from a checkout; ssdlite/commands/download.py)::

    ssdlite-download coco --root data/coco        # -> data/coco/{train2017,val2017,annotations}
    ssdlite-download voc --root data              # -> data/VOCdevkit/{VOC2007,VOC2012}
    ssdlite-download voc --root data --dry-run    # say what would be fetched, touch nothing

Every archive is checked against its published byte size and MD5 before it is extracted; a mismatch deletes the
download and stops with an error. An archive already on disk that passes the check is not fetched again, and a
folder already extracted is not extracted again (its marker file ``.<archive>.extracted`` says so). Progress is
logged (INFO) to this module's logger.

Checksums: the VOC MD5s are the ones torchvision's VOCDetection checks. cocodataset.org publishes no checksums;
the COCO 2017 MD5s below are the ones the widely used download scripts check (the same values in several
independent projects), and the sizes are the servers' Content-Length. Both size and MD5 are verified. An archive
whose ``md5`` is None is verified by size only, and the download says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from ssdlite_runtime.errors import SSDLiteError

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Archive:
    """One official archive: where it lives, how big it is, its MD5 (None when unknown)."""

    url: str
    size: int | None
    md5: str | None

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


ARCHIVES: dict[str, list[Archive]] = {
    "coco": [
        Archive("http://images.cocodataset.org/zips/train2017.zip", 19_336_861_798, "cced6f7f71b7629ddf16f17bbcfab6b2"),
        Archive("http://images.cocodataset.org/zips/val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80"),
        Archive(
            "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
            252_907_541,
            "f4bbac642086de4f52a3fdda2de5fa2c",
        ),
    ],
    "voc": [
        Archive(
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
            460_032_000,
            "c52e279531787c972589f7e41ab4ae64",
        ),
        Archive(
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
            451_020_800,
            "b6e924de25625d8de591ea690078ad9f",
        ),
        Archive(
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            1_999_639_040,
            "6cd6e144f989b92b3379bac3b3de84fd",
        ),
    ],
}


class DownloadError(SSDLiteError):
    """A download failed, an archive did not match its size / checksum, or it could not be extracted."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, archive: Archive) -> None:
    """Raises DownloadError when ``path`` does not have the archive's size or MD5."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        raise DownloadError(f"{path} has {size} bytes, expected {archive.size}; the download is incomplete or "
                            "corrupt, delete it and run again")
    if archive.md5 is None:
        logger.info(f"note: no published MD5 recorded for {archive.file_name}; checked its size only")
        return
    actual = md5_of(path)
    if actual != archive.md5:
        raise DownloadError(f"{path} has MD5 {actual}, expected {archive.md5}; the download is corrupt, delete it "
                            "and run again")


def fetch(archive: Archive, destination: Path) -> Path:
    """Downloads ``archive`` to ``destination`` (via a .part file) unless a verified copy is already there."""
    if destination.is_file():
        try:
            verify(destination, archive)
            logger.info(f"{destination} already downloaded and verified")
            return destination
        except DownloadError as error:
            logger.info(f"re-downloading: {error}")
    partial = destination.with_name(destination.name + ".part")
    logger.info(f"downloading {archive.url} -> {destination}")
    try:
        with urllib.request.urlopen(archive.url) as response, partial.open("wb") as stream:
            _copy_with_progress(response, stream, archive.size)
    except OSError as error:  # URLError, HTTPError and disk errors
        partial.unlink(missing_ok=True)
        raise DownloadError(f"cannot download {archive.url}: {error}") from None
    try:
        verify(partial, archive)
    except DownloadError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(destination)
    return destination


def _copy_with_progress(source, target, total: int | None) -> None:
    copied, next_report = 0, 0.1
    for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
        target.write(chunk)
        copied += len(chunk)
        if total and copied / total >= next_report:
            logger.info(f"  {copied / total:.0%} of {total / 1e9:.2f} GB")
            next_report += 0.1


def extract(path: Path, root: Path) -> None:
    """Extracts a .zip or .tar into ``root``, refusing members that would land outside it.

    Raises:
        DownloadError: a member would be written outside ``root``, or the archive is not a readable zip / tar.
    """
    marker = root / f".{path.name}.extracted"
    if marker.exists():
        logger.info(f"{path.name} already extracted into {root}")
        return
    logger.info(f"extracting {path} -> {root}")
    try:
        _extract_inside(path, root)
    except (tarfile.TarError, zipfile.BadZipFile) as error:
        raise DownloadError(f"cannot extract {path}: {error}; delete it and run again") from None
    marker.touch()


def _extract_inside(path: Path, root: Path) -> None:
    resolved_root = root.resolve()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                _check_inside(resolved_root, name, path)
            archive.extractall(root)
    else:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                _check_inside(resolved_root, member.name, path)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                archive.extractall(root, filter="data")
            else:
                archive.extractall(root)


def _check_inside(root: Path, member: str, archive: Path) -> None:
    if not (root / member).resolve().is_relative_to(root):
        raise DownloadError(f"{archive} holds {member!r}, which would be written outside {root}; not extracting")


def download(
    dataset: str,
    root: str | Path,
    *,
    dry_run: bool = False,
    keep_archives: bool = True,
    only: list[str] | None = None,
) -> list[Path]:
    """Downloads, verifies and extracts every archive of ``dataset`` into ``root``.

    Args:
        dataset: "coco" or "voc".
        root: folder to download and extract into (created).
        dry_run: only log what would be done.
        keep_archives: keep the archives after extraction (False deletes them).
        only: archive file names to fetch (e.g. ["val2017.zip", "annotations_trainval2017.zip"]); None: all.

    Returns:
        The archive paths (those that would be written, for a dry run).
    """
    if dataset not in ARCHIVES:
        raise DownloadError(f"unknown dataset {dataset!r}; choose one of {sorted(ARCHIVES)}")
    archives = ARCHIVES[dataset]
    if only:
        unknown = sorted(set(only) - {archive.file_name for archive in archives})
        if unknown:
            raise DownloadError(f"{dataset} has no archive {unknown}; choose from "
                                f"{[archive.file_name for archive in archives]}")
        archives = [archive for archive in archives if archive.file_name in only]
    root = Path(root)
    paths = [root / archive.file_name for archive in archives]
    if dry_run:
        for archive, path in zip(archives, paths):
            size = f"{archive.size:,} bytes" if archive.size is not None else "size unknown"
            checksum = f"md5 {archive.md5}" if archive.md5 else "no md5 (size check only)"
            logger.info(f"would download {archive.url} -> {path} ({size}, {checksum}) and extract into {root}")
        return paths
    root.mkdir(parents=True, exist_ok=True)
    for archive, path in zip(archives, paths):
        fetch(archive, path)
        extract(path, root)
        if not keep_archives:
            path.unlink()
    return paths
