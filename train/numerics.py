"""Keep subnormal floats out of training: on a CPU an arithmetic operation on one costs ~100x a
normal float's, and a convolution that keeps meeting them trains ~10x slower.

Every entry point that trains or evaluates (``python -m train``, its fine-tuning phase and
validation, ``python -m train.sweep``, each torchrun worker) runs its work inside
:func:`flush_denormals` (train/pipeline.py ``run_command``, train/sweep_runs.py ``sweep``), which
sets the CPU's flush-to-zero and denormals-are-zero flags: a result that would be subnormal is 0,
and a subnormal input reads as 0. The flags are per thread. PyTorch's intra-op threads copy them
from the thread that starts them, at the first parallel operation of the process, and keep them;
so the context is entered before any tensor work (as the work starts, once the command line is
parsed). Entered later (a test process, a notebook), it covers the calling thread only -- which
runs every operation too small to split -- and says so in the log. DataLoader
workers, when a loader has them, are forked processes with the flags of the thread that forks them.

Where they come from: a parameter whose gradient is exactly 0 every step (a ReLU channel that
never fires, and the next layer's weights that read it) has Adam's first moment multiplied by
beta1 = 0.9 each step, so a moment of 1e-10 becomes subnormal after ~600 steps. Those moments
alone cost nothing measurable (``python -m train.numerics``: tens of thousands of them, the same
images per CPU-second); what costs is a subnormal in a tensor a convolution reads -- a 3x3 conv on
activations a fifth subnormal takes ~17x its time -- weights, activations or gradients, which
``--checkpoint`` counts, layer by layer, for a run's checkpoint.

Usage:
    python -m train.numerics --checkpoint RUN/tinybeauty_last.pt   # where a checkpoint's subnormals are
    python -m train.numerics --threads 1 --steps 20 --rounds 3       # what subnormals cost, timed
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from models.cli import positive_int

log = logging.getLogger(__name__)

# Elements in the probe of the intra-op threads: enough chunks of PyTorch's grain (32768) for each.
PROBE_ELEMENTS = 1 << 21


def subnormal_mask(tensor: torch.Tensor) -> torch.Tensor:
    """Where ``tensor`` holds a subnormal value. Read from the bits, so the CPU's flags cannot hide one."""
    if tensor.dtype != torch.float32:
        tensor = tensor.float()
    exponent = tensor.contiguous().view(torch.int32).bitwise_and(0x7F800000)
    mantissa = tensor.contiguous().view(torch.int32).bitwise_and(0x007FFFFF)
    return (exponent == 0) & (mantissa != 0)


def count_subnormals(tensors: Iterable[torch.Tensor]) -> int:
    return sum(int(subnormal_mask(t).sum()) for t in tensors if t.is_floating_point())


def _subnormal_probe(elements: int) -> torch.Tensor:
    """Float32 values of bit pattern 1 (1.4e-45), made from integers: converting a float would flush them."""
    return torch.ones(elements, dtype=torch.int32).view(torch.float32)


def threads_that_keep_subnormals(elements: int) -> int:
    """How many of ``elements`` probe values survive ``x * 1``: 0 when every thread that did the work flushes."""
    return int(subnormal_mask(_subnormal_probe(elements) * 1.0).sum())


def flushes_here() -> bool:
    """Whether the calling thread flushes (one element: no other thread does the work)."""
    return threads_that_keep_subnormals(1) == 0


@contextmanager
def flush_denormals() -> Iterator[bool]:
    """Flush-to-zero and denormals-are-zero for the enclosed code; yields whether the intra-op threads
    flush too. Restores the calling thread's earlier setting on exit (see the module docstring)."""
    was_flushing = flushes_here()
    if not torch.set_flush_denormal(True):
        log.warning("this CPU cannot flush subnormal floats: a run that meets them trains slower")
        yield False
        return
    everywhere = threads_that_keep_subnormals(PROBE_ELEMENTS) == 0
    if not everywhere:
        log.info("subnormal floats are flushed on this thread only: PyTorch's intra-op threads started earlier "
                 "without it (enter flush_denormals before any tensor work)")
    try:
        yield everywhere
    finally:
        torch.set_flush_denormal(was_flushing)


def optimizer_moments(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for state in optimizer.state.values():
        yield from (value for key, value in state.items() if key != "step" and torch.is_tensor(value)
                    and value.is_floating_point())


def state_census(model_state: dict, optimizer_state: dict | None) -> dict[str, int]:
    """Subnormal values in a state dict's weights and in each kind of optimizer moment."""
    counts = {"weights": count_subnormals(v for v in model_state.values() if torch.is_tensor(v))}
    for per_param in (optimizer_state or {}).get("state", {}).values():
        for key, value in per_param.items():
            if key != "step" and torch.is_tensor(value) and value.is_floating_point():
                counts[key] = counts.get(key, 0) + count_subnormals([value])
    return counts


def step_census(model: torch.nn.Module, source: torch.Tensor, target: torch.Tensor,
                loss_weights: dict, regions: torch.Tensor | None = None) -> dict[str, tuple[int, int, int]]:
    """Per layer: the subnormal values in its output, in the gradient of its output, and in its
    weights' gradients, over one training step's forward and backward (run without flushing); ``regions``: the
    faces' region maps, for a network that reads them."""
    from train.losses import makeup_loss

    counts: dict[str, list[int]] = {}
    handles = []
    for name, module in model.named_modules():
        if list(module.children()):
            continue  # leaves only: a container's output is its last leaf's
        counts[name] = [0, 0, 0]
        handles.append(module.register_forward_hook(
            lambda _m, _i, out, n=name: counts[n].__setitem__(0, counts[n][0] + count_subnormals([out]))))
        handles.append(module.register_full_backward_hook(
            lambda _m, _gi, grad_out, n=name: counts[n].__setitem__(1, counts[n][1] + count_subnormals(
                [g for g in grad_out if g is not None]))))
    eye_mask = torch.ones_like(source[:, :1])  # the whole face: no eye masks without the data's landmarks
    source.requires_grad_(True)  # so the first layer's backward hook sees a gradient to report
    makeup_loss(model(source, clamp=False, regions=regions), target, eye_mask, **loss_weights)["loss"].backward()
    for handle in handles:
        handle.remove()
    for name, module in model.named_modules():
        if name in counts:
            counts[name][2] = count_subnormals(p.grad for p in module.parameters(recurse=False) if p.grad is not None)
    return {name: tuple(values) for name, values in counts.items() if any(values)}


def report_checkpoint(path: Path, faces: int) -> None:
    """Print where a checkpoint's subnormal values are: its state, and one step on its training faces."""
    from models.checkpoint import checkpoint_split, read_checkpoint
    from models.data import faces_as_tensors, load_split
    from models.tinybeauty import build_model
    from train.region_maps import region_tensor, run_region_maps

    checkpoint = read_checkpoint(path)
    print(f"{path}: subnormal values " + ", ".join(
        f"{name} {count}" for name, count in state_census(checkpoint["model"], checkpoint.get("optimizer")).items()))
    model = build_model(checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    split = checkpoint_split(checkpoint, path)
    cache = load_split(split, "train", limit=faces)
    source, target = faces_as_tensors(cache)
    regions = region_tensor(run_region_maps(cache, split, model.config.region_inputs)) \
        if model.config.region_inputs else None  # placed by the face mesh, as training placed them
    config = checkpoint.get("train_config", {})
    weights = {key: config[key] for key in ("l1_weight", "eyeliner_weight", "pixel_loss", "charbonnier_eps")
               if key in config}
    layers = step_census(model.train(), source, target, weights, regions)
    print(f"one step on {len(source)} training faces, subnormal values per layer (output, output gradient, "
          "weight gradient):" + "".join(f"\n  {name}: {counts}" for name, counts in layers.items()) if layers
          else f"one step on {len(source)} training faces: no subnormal activation or gradient")


# The reproduction: a tiny model in which a quarter of each ReLU layer's channels never fire, with
# the Adam moments of every parameter that gets no gradient where ~600 steps of decay leave them.
REPRODUCTIONS = ("as_is", "flushed")
DEAD_SHARE = 4  # one channel in this many is dead
DECAYED_MOMENT = 2e-38  # just above float32's smallest normal: subnormal after a few steps, for ~150


def crafted_training(batch: int, crop: int):
    """One training step of the crafted model (a no-argument callable) and its optimizer."""
    from models.tinybeauty import build_model
    from train.losses import makeup_loss

    torch.manual_seed(0)
    model = build_model("tiny")
    relu_convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels != 12]
    with torch.no_grad():
        for conv in relu_convs:
            conv.bias[::DEAD_SHARE] = -1e4  # below any input: the ReLU after it never fires
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    source = torch.rand(batch, 3, crop, crop)
    target, eye = (source + 0.05 * torch.rand_like(source)).clamp(0, 1), torch.rand(batch, 1, crop, crop)

    def step() -> None:
        loss = makeup_loss(model(source, clamp=False), target, eye, pixel_loss="charbonnier")["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    with torch.no_grad():
        for param in model.parameters():
            idle = param.grad == 0
            moment = optimizer.state[param]["exp_avg"]
            moment[idle] = DECAYED_MOMENT * (1 + torch.rand(int(idle.sum())))
    return step, optimizer


def time_reproduction(kind: str, threads: int, steps: int, batch: int, crop: int) -> dict:
    """images/s of ``steps`` crafted steps run the ``kind`` way, with the subnormal moments seen."""
    torch.set_num_threads(threads)
    step, optimizer = crafted_training(batch, crop)
    seen, elapsed, cpu = 0, 0.0, 0.0
    for _ in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        elapsed, cpu = elapsed + time.perf_counter() - start, cpu + time.process_time() - cpu_start
        seen = max(seen, count_subnormals(optimizer_moments(optimizer)))
    return {"images_per_s": steps * batch / elapsed, "images_per_cpu_s": steps * batch / cpu,
            "most_subnormal_moments": seen}


SUBNORMAL_SHARE = 0.2  # of a convolution's input in the second measurement


@torch.no_grad()
def time_convolution(batch: int, crop: int) -> tuple[float, float]:
    """CPU milliseconds (best of 5) of one 16-channel 3x3 convolution of the model's width on normal
    activations, and on the same activations with a fifth of them subnormal."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    normal = torch.rand(batch, 16, crop // 2, crop // 2)
    mixed = normal.clone()
    mixed.view(torch.int32)[torch.rand_like(normal) < SUBNORMAL_SHARE] = 1  # the bits of 1.4e-45

    def best_ms(features: torch.Tensor) -> float:
        times = []
        for _ in range(5):
            start = time.process_time()
            conv(features)
            times.append(time.process_time() - start)
        return 1000 * min(times)
    return best_ms(normal), best_ms(mixed)


def reproduce(args: argparse.Namespace) -> int:
    """Each kind in its own process (the flags of the intra-op threads are fixed when they start),
    interleaved over rounds so a shared machine's load hits every kind alike."""
    rates: dict[str, list[float]] = {kind: [] for kind in REPRODUCTIONS}
    for round_index in range(1, args.rounds + 1):
        for kind in REPRODUCTIONS:
            command = [sys.executable, "-m", "train.numerics", "--kind", kind, "--threads", str(args.threads),
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--crop", str(args.crop)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rate, cpu_rate, subnormals, normal_ms, mixed_ms = done.stdout.split()
            rates[kind].append(float(cpu_rate))
            print(f"round {round_index}: {kind}: training step {float(rate):.1f} images/s, {float(cpu_rate):.1f} per "
                  f"CPU-second ({subnormals} subnormal Adam moments at most); a 3x3 conv {float(normal_ms):.1f} CPU ms "
                  f"on normal activations, {float(mixed_ms):.1f} with {SUBNORMAL_SHARE:.0%} subnormal", flush=True)
    print(f"training step, images per CPU-second, median of {args.rounds} rounds ({args.threads} thread(s), "
          f"batch {args.batch_size} of "
          f"{args.crop} px, {args.steps} steps): "
          + ", ".join(f"{kind} {statistics.median(values):.1f}" for kind, values in rates.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.numerics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="count the subnormal values in this checkpoint and in one "
                        "training step on its training faces, and stop")
    parser.add_argument("--faces", type=positive_int, default=16, help="with --checkpoint: training faces for the "
                        "step (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=2, help="PyTorch threads (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=40, help="timed steps per run (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="default: %(default)s")
    parser.add_argument("--crop", type=positive_int, default=128, help="side of the images (default: %(default)s)")
    parser.add_argument("--kind", choices=REPRODUCTIONS, help=argparse.SUPPRESS)  # one timed run, in a child
    args = parser.parse_args(argv)
    if args.checkpoint:
        report_checkpoint(args.checkpoint, args.faces)
        return 0
    if args.kind is None:
        return reproduce(args)
    with flush_denormals() if args.kind == "flushed" else _unchanged():
        figures = time_reproduction(args.kind, args.threads, args.steps, args.batch_size, args.crop)
        normal_ms, mixed_ms = time_convolution(args.batch_size, args.crop)
    print(f"{figures['images_per_s']:.3f} {figures['images_per_cpu_s']:.3f} {figures['most_subnormal_moments']} "
          f"{normal_ms:.3f} {mixed_ms:.3f}")
    return 0


@contextmanager
def _unchanged() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
