"""Print each TinyBeauty variant's size: parameters, MACs at 256x256, fp32 and int8 weight bytes.

Usage:
    python -m models [--size 256] [--looks berry,natural,classic,smoky] [--region-maps 0]

By default with the three region maps (lips, eyes, cheeks) beside the face that `python -m train` gives its
networks; ``--region-maps 0``: the face alone (``python -m train --no-region-inputs``).
"""

import argparse
from dataclasses import replace

from models.tinybeauty import VARIANTS, build_model, describe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="input side in pixels (default: %(default)s)")
    parser.add_argument("--looks", help="comma-separated look names: the variants holding that many looks "
                        "(a row of decoder gates each; default: one look)")
    parser.add_argument("--region-maps", type=int, default=3, choices=range(0, 4), help="region maps read beside "
                        "the face (default %(default)s, what training builds; 0: the face alone)")
    args = parser.parse_args(argv)
    looks = tuple(args.looks.split(",")) if args.looks else None
    maps = ("lips", "eyes", "cheeks")[:args.region_maps]  # faces/regions.json's, in training's order
    for name, config in VARIANTS.items():
        model = build_model(replace(config, region_inputs=maps, **({"looks": looks} if looks else {})))
        print(f"{name:>5}: {describe(model, args.size, args.size)}")


if __name__ == "__main__":
    main()
