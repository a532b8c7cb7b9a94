"""Print each TinyBeauty variant's size: parameters, MACs at 256x256, fp32 and int8 weight bytes.

Usage:
    python -m models [--size 256]
"""

import argparse

from models.tinybeauty import VARIANTS, build_model, describe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="input side in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    for name in VARIANTS:
        print(f"{name:>5}: {describe(build_model(name), args.size, args.size)}")


if __name__ == "__main__":
    main()
