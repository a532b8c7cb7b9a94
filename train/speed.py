"""Training-step speed of one recipe's shape under each way of running it (eager float32,
channels-last, bfloat16 autocast, torch.compile), interleaved so a shared machine's load hits
every variant alike.

Usage:
    python -m train.speed                         # batch 16 of 128 px crops (the CPU preset), 1 thread
    python -m train.speed --threads 2 --rounds 6 --kinds eager,bf16

Prints images/s per round and the median per kind. Speed only: whether a faster kind trains to
the same quality is a sweep's question (docs/training.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.cli import positive_int
from models.tinybeauty import build_model
from train.losses import makeup_loss

KINDS = ("eager", "channels_last", "bf16", "compile")
STEPS_PER_ROUND = 10


def make_step(kind: str, batch: int, side: int):
    """One optimizer step of a fresh tiny model, run the ``kind`` way; returns a no-argument callable."""
    torch.manual_seed(0)
    model = build_model("tiny")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    source = torch.rand(batch, 3, side, side)
    target, eye = (source + 0.05 * torch.rand_like(source)).clamp(0, 1), torch.rand(batch, 1, side, side)
    forward = model
    if kind == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        source, target, eye = (x.contiguous(memory_format=torch.channels_last) for x in (source, target, eye))
    elif kind == "compile":
        forward = torch.compile(model)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16"):
            made_up = forward(source, clamp=False)
        loss = makeup_loss(made_up.float(), target, eye)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=positive_int, default=1, help="PyTorch threads (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=4, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="default: %(default)s")
    parser.add_argument("--crop", type=positive_int, default=128, help="side of the crops (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of " + ", ".join(KINDS))
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        parser.error(f"--kinds: unknown {unknown}; choose from {', '.join(KINDS)}")
    torch.set_num_threads(args.threads)
    steps = {kind: make_step(kind, args.batch_size, args.crop) for kind in kinds}
    for kind, step in steps.items():  # warm-up: torch.compile compiles here
        start = time.perf_counter()
        for _ in range(3):
            step()
        print(f"{kind}: warm-up {time.perf_counter() - start:.1f} s", flush=True)
    rates = {kind: [] for kind in kinds}
    for round_index in range(1, args.rounds + 1):
        for kind, step in steps.items():
            start = time.perf_counter()
            for _ in range(STEPS_PER_ROUND):
                step()
            rates[kind].append(STEPS_PER_ROUND * args.batch_size / (time.perf_counter() - start))
        print(f"round {round_index}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()),
              flush=True)
    print(f"images/s, median of {args.rounds} rounds ({args.threads} thread(s), batch {args.batch_size} of "
          f"{args.crop} px): " + ", ".join(f"{kind} {statistics.median(v):.1f}" for kind, v in rates.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
