"""``openood-immuno imagenet-o-list``: write ImageNet-O's image list in OpenOOD's layout."""
from __future__ import annotations

from .args import HelpFormatter, UsageError

DESCRIPTION = """\
Write DATA_ROOT/benchmark_imglist/imagenet/test_imagenet_o.txt (one 'imagenet_o/<wnid>/<file> -1'
line per image, sorted) from the ImageNet-O release extracted to
DATA_ROOT/images_largescale/imagenet_o/<wnid>/ (Hendrycks et al.: 2,000 images, 200 class
folders). The list is what `eval --benchmark immuno_vlm` reads as its near-OOD set. No network.

example:
  tar -xf imagenet-o.tar -C DATA_ROOT/images_largescale
  mv DATA_ROOT/images_largescale/imagenet-o DATA_ROOT/images_largescale/imagenet_o
  openood-immuno imagenet-o-list --data-root DATA_ROOT"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("imagenet-o-list", help="write ImageNet-O's image list (immuno_vlm benchmark)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--data-root", required=True, help="OpenOOD's data_root (holding images_largescale/)")
    p.set_defaults(func=run)


def run(args) -> int:
    from openood_immuno.data.imagenet_o import OFFICIAL_CLASSES, OFFICIAL_IMAGES, write_imagenet_o_list

    try:
        written = write_imagenet_o_list(args.data_root)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {written.path}: {written.images} images in {written.classes} class folders")
    if not written.official:
        print(f"openood-immuno: warning: the official ImageNet-O has {OFFICIAL_IMAGES} images in "
              f"{OFFICIAL_CLASSES} class folders: results on this list are not the paper's ImageNet-O")
    return 0
