"""Two exported sets side by side: bytes and latency per format, timed in alternating rounds.

Usage:
    python -m benchmark.compare --base one_look_artifacts --other artifacts --out bench/compare
    python -m benchmark.compare --base A --other B --threads 1 --rounds 6
    python -m benchmark.compare --base one_look --fewer two_looks --other artifacts   # bytes: a look's own cost

What it is for: the cost of a change measured on one machine at one time, where two separate benchmark
runs would differ by the machine's load between them. The catalogue's question is the usual one: the
files of several looks (``--other``) against those of one of its looks (``--base``, the same shared
weights: ``python -m train.keep_looks``), so that the difference is the looks alone. Each format
present in both sets and runnable here is loaded with its own runtime (export/loading.py) and timed at
batch 1, ``--rounds`` times each, base and other alternating (ABBA order, so a drift of the machine's
load weighs on both alike); a several-look file runs an even blend of its looks (its one-hot inputs take
the same ops), a region-input file all-zero maps. The ratio reported is other/base of the medians of the
rounds' medians, with the lowest and highest round ratio beside it.

Bytes per extra look: (other - base) / (looks other - looks base), the average, which carries the look
input's fixed cost (the ops that mix the looks' gates, there from two looks on). With ``--fewer`` (the same
catalogue kept to at least two looks, bytes only), the cost of one more look is the slope from it to
``--other``, and the look input's fixed cost what is left: fewer - base - slope x (looks fewer - looks base).

Writes OUT/compare.json (machine, both manifests' files, every round), OUT/compare.md (the table) and
OUT/compare.png (the latency ratio and the byte difference per format). Formats that cannot run here
(Core ML off macOS) get bytes only, marked.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from benchmark.latency import available_cores, measure_latency
from export.formats import BY_NAME
from export.manifest import ManifestError, read_manifest
from export.runtime import RuntimeUnavailable, silence_known_noise
from models.atomic import save_figure, write_text
from models.cli import output_folder, positive_float, positive_int

log = logging.getLogger(__name__)


def example_inputs(loaded) -> tuple[tuple[np.ndarray, ...], dict]:
    """A plain face as the file takes it, with an even blend of its looks and empty region maps where it
    takes them."""
    size = loaded.image_size
    face = np.full((1, 3, size, size), 0.5, np.float32)
    looks = loaded.even_blend()
    regions = loaded.empty_regions()
    return (face, *([] if looks is None else [looks])), ({} if regions is None else {"regions": regions})


def timed_rounds(runners: dict[str, tuple], rounds: int, min_runs: int, min_seconds: float) -> dict[str, list]:
    """Each runner's median latency (ms) per round, the runners taking turns in ABBA order."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in (names if index % 2 == 0 else names[::-1]):
            run, args, kwargs = runners[name]
            figures = measure_latency(lambda: run(*args, **kwargs), warmup=3,  # noqa: B023 (called at once)
                                      min_runs=min_runs, min_seconds=min_seconds)
            times[name].append(figures["median_ms"])
    return times


def byte_costs(sizes: dict[str, int], looks: dict[str, int]) -> dict:
    """A format's bytes per set ('base', 'other' and optionally 'fewer') and what the looks cost: the difference,
    the average per extra look and, with 'fewer', the slope per look and the look input's fixed cost."""
    costs = {f"{side}_bytes": size for side, size in sizes.items()}
    costs["byte_difference"] = sizes["other"] - sizes["base"]
    if looks["other"] > looks["base"]:
        costs["bytes_per_extra_look"] = costs["byte_difference"] / (looks["other"] - looks["base"])
    if "fewer" in sizes:
        costs["bytes_per_look"] = (sizes["other"] - sizes["fewer"]) / (looks["other"] - looks["fewer"])
        costs["look_input_bytes"] = sizes["fewer"] - sizes["base"] - costs["bytes_per_look"] * (looks["fewer"]
                                                                                              - looks["base"])
    return costs


def compare_format(fmt_name: str, sets: dict[str, dict], args: argparse.Namespace) -> dict:
    """One format's bytes in both sets and, where it runs here, its latency ratio."""
    from export.loading import load_model

    row = {"format": fmt_name, **byte_costs({side: found["entries"][fmt_name]["bytes"] for side, found in sets.items()},
                                            {side: found["looks"] for side, found in sets.items()})}
    runners = {}
    try:
        for side, found in ((side, sets[side]) for side in ("base", "other")):
            loaded = load_model(found["folder"] / found["entries"][fmt_name]["file"], threads=args.threads)
            faces, extra = example_inputs(loaded)
            runners[side] = (loaded.runner, faces, extra)
            row[f"{side}_looks"] = len(loaded.looks)
    except RuntimeUnavailable as error:
        row["latency"] = f"not measured here: {str(error).splitlines()[0]}"
        return row
    times = timed_rounds(runners, args.rounds, args.min_runs, args.min_seconds)
    ratios = np.asarray(times["other"]) / np.asarray(times["base"])
    row |= {"base_ms": float(np.median(times["base"])), "other_ms": float(np.median(times["other"])),
            "ratio": float(np.median(times["other"]) / np.median(times["base"])),
            "round_ratio_min": float(ratios.min()), "round_ratio_max": float(ratios.max()), "rounds": times}
    log.info("%-9s base %.2f ms, other %.2f ms: x%.3f (rounds x%.3f-x%.3f)", fmt_name, row["base_ms"],
             row["other_ms"], row["ratio"], row["round_ratio_min"], row["round_ratio_max"])
    return row


def markdown(report: dict) -> str:
    base, other, fewer = report["base"], report["other"], report.get("fewer")
    slope = fewer is not None
    lines = [f"# {other['folder']} against {base['folder']}", "",
             f"{other['looks']} looks against {base['looks']}; {report['threads']} thread(s), {report['rounds']} "
             f"alternating rounds per file, {report['machine']}. Latency: median of the rounds' medians, batch 1."
             + (f" A look's own bytes: the slope from {fewer['looks']} looks ({fewer['folder']}) to {other['looks']}; "
                "the look input's fixed cost: the rest of the difference." if slope else ""),
             "", "| format | bytes (base) | bytes (other) | difference | per extra look (average) "
             + ("| per look (slope) | look input (fixed) " if slope else "")
             + "| latency base | latency other | other / base (rounds) |",
             "|---|---|---|---|---|" + ("---|---|" if slope else "") + "---|---|---|"]
    for row in report["formats"]:
        per_look = f"{row['bytes_per_extra_look']:,.0f}" if "bytes_per_extra_look" in row else "-"
        if slope:
            per_look += f" | {row['bytes_per_look']:,.0f} | {row['look_input_bytes']:,.0f}"
        if "ratio" in row:
            timing = (f"{row['base_ms']:.2f} ms | {row['other_ms']:.2f} ms | x{row['ratio']:.3f} "
                      f"(x{row['round_ratio_min']:.3f}-x{row['round_ratio_max']:.3f})")
        else:
            timing = f"- | - | {row['latency']}"
        lines.append(f"| {row['format']} | {row['base_bytes']:,} | {row['other_bytes']:,} "
                     f"| {row['byte_difference']:+,} | {per_look} | {timing} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["formats"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    timed = [row for row in rows if "ratio" in row]
    names = [row["format"] for row in timed]
    left.bar(names, [row["ratio"] for row in timed], color="#7a4f9a")
    left.errorbar(names, [row["ratio"] for row in timed],
                  yerr=[[row["ratio"] - row["round_ratio_min"] for row in timed],
                        [row["round_ratio_max"] - row["ratio"] for row in timed]], fmt="none", ecolor="black")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.axhline(1.1, color="#c0392b", linestyle="--", linewidth=0.8, label="x1.1")
    left.set_ylabel("latency, other / base")
    left.set_ylim(0.8, max(1.2, *[row["round_ratio_max"] + 0.02 for row in timed]) if timed else 1.2)
    left.legend(loc="upper right", fontsize=8)
    right.bar([row["format"] for row in rows], [row["byte_difference"] for row in rows], color="#d4a373")
    right.set_ylabel("bytes, other - base")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{report['other']['looks']} looks against {report['base']['looks']}, "
                 f"{report['threads']} thread(s)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def read_set(folder: Path) -> dict:
    manifest = read_manifest(folder, check_runs=False)
    entries = {entry["format"]: entry for entry in manifest["artifacts"] if BY_NAME[entry["format"]].shipped}
    return {"folder": folder, "entries": entries, "looks": len(manifest.get("looks") or [None])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="folder of the set to compare against")
    parser.add_argument("--other", type=Path, required=True, help="folder of the set to compare")
    parser.add_argument("--fewer", type=Path,
                        help="folder of the same catalogue with fewer looks (at least two, fewer than --other's): "
                             "a look's own bytes as the slope from it to --other (bytes only, not timed)")
    parser.add_argument("--out", type=output_folder, default=Path("bench/compare"), help="report folder")
    parser.add_argument("--threads", type=positive_int, default=1, help="threads per runtime (default: 1)")
    parser.add_argument("--rounds", type=positive_int, default=6, help="timing rounds per file (default: 6)")
    parser.add_argument("--min-runs", type=positive_int, default=30, help="runs per round, at least (default: 30)")
    parser.add_argument("--min-seconds", type=positive_float, default=1.0,
                        help="seconds per round, at least (default: 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    silence_known_noise()
    try:
        sets = {"base": read_set(args.base), "other": read_set(args.other)}
        if args.fewer:
            sets["fewer"] = read_set(args.fewer)
    except (ManifestError, OSError) as error:
        print(f"error: {error}; export the sets first (`python -m export --out DIR`)", file=sys.stderr)
        return 2
    if args.fewer and not sets["base"]["looks"] < sets["fewer"]["looks"] < sets["other"]["looks"]:
        print(f"error: --fewer {args.fewer} has {sets['fewer']['looks']} look(s): it needs more than --base's "
              f"{sets['base']['looks']} and fewer than --other's {sets['other']['looks']}", file=sys.stderr)
        return 2
    shared = [name for name in sets["base"]["entries"] if all(name in found["entries"] for found in sets.values())]
    if not shared:
        print(f"error: {', '.join(str(found['folder']) for found in sets.values())} have no format in common",
              file=sys.stderr)
        return 2
    rows = []
    for index, name in enumerate(shared, 1):
        log.info("[%d/%d] %s", index, len(shared), name)
        rows.append(compare_format(name, sets, args))
    import platform

    report = {"machine": f"{platform.processor() or platform.machine()}, {available_cores()} core(s)",
              "threads": args.threads, "rounds": args.rounds,
              "base": {"folder": str(args.base), "looks": sets["base"]["looks"]},
              "other": {"folder": str(args.other), "looks": sets["other"]["looks"]}, "formats": rows}
    if args.fewer:
        report["fewer"] = {"folder": str(args.fewer), "looks": sets["fewer"]["looks"]}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "compare.json", json.dumps(report, indent=2) + "\n")
    write_text(args.out / "compare.md", markdown(report))
    plot(report, args.out / "compare.png")
    print(markdown(report))
    print(f"wrote {args.out / 'compare.md'}, compare.json, compare.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
