"""``ssdlite-download``: COCO 2017 or PASCAL VOC 2007+2012 from their official servers, verified and extracted.

Usage:
    ssdlite-download coco --root data/coco        # -> data/coco/{train2017,val2017,annotations}
    ssdlite-download voc --root data              # -> data/VOCdevkit/{VOC2007,VOC2012}
    ssdlite-download voc --root data --dry-run    # print what would be fetched, touch nothing

From a checkout, ``python data/download.py`` is the same command. Every archive is checked against its published
byte size and MD5 before it is extracted; a mismatch deletes the download and stops with an error. An archive
already on disk that passes the check is not fetched again, and a folder already extracted is not extracted again.
See ssdlite/data/download.py for where the checksums come from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdlite.data.download import ARCHIVES, download
from ssdlite_runtime.errors import command

PROG = "ssdlite-download"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(ARCHIVES), help="which dataset")
    parser.add_argument("--root", required=True, type=Path,
                        help="folder to download into: data/coco for COCO, data for VOC (creates data/VOCdevkit)")
    parser.add_argument("--dry-run", action="store_true", help="print the URLs, sizes and checksums; download nothing")
    parser.add_argument("--only", nargs="+", metavar="ARCHIVE",
                        help="fetch only these archives, e.g. --only val2017.zip annotations_trainval2017.zip")
    parser.add_argument("--delete-archives", action="store_true", help="delete each archive once extracted")
    return parser


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = build_parser(prog).parse_args(argv)
    download(args.dataset, args.root, dry_run=args.dry_run, keep_archives=not args.delete_archives, only=args.only)
