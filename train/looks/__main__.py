"""python -m train.looks [--figure PNG]: the catalogue of looks, and a figure of them (train/looks/figure.py)."""

import sys

from train.looks.figure import main

sys.exit(main())
