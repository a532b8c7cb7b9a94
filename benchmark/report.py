"""Benchmark reports: JSON (every figure), Markdown (the table), a latency/size plot, a sample grid,
the page's camera per stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.live import markdown_lines as live_lines
from benchmark.mobile import markdown_lines as mobile_lines
from models.atomic import atomic_path, remove_leftovers, save_figure, write_text
from models.gates import SIZE_BUDGET_BYTES


def _fmt_latency(row: dict, threads: str) -> str:
    figures = row["latency"].get(threads)
    if not figures:
        return "not measured" if row["format"] != "baseline" else "-"
    return f"{figures['median_ms']:.2f} / {figures['p90_ms']:.2f}"


def _db(value: float | None, star: str = "") -> str:
    return "-" if value is None else f"{value:.2f} dB{star}"


def markdown_table(report: dict) -> str:
    threads = [str(t) for t in report["threads"]]
    headline = report["headline_split"]
    others = [part for part in report["pairs"] if part != headline]
    label = {"test": "test", "val": "val", "test-real": "test-real"}
    head = ["model", "bytes", f"PSNR {label[headline]} (mean / pooled)", f"SSIM {label[headline]}"]
    head += [f"PSNR {label[part]} (mean)" for part in others]
    head += [f"PSNR vs PyTorch ({label[headline]})"]
    head += [f"latency ms median / p90 ({t} thr)" for t in threads]
    head += [f"img/s ({threads[-1]} thr)", f"% fp32 peak ({threads[-1]} thr)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        last = row["latency"].get(threads[-1])
        star = " *" if row.get("stand_in") else ""
        scored = row["quality"].get(headline, {})
        cells = [
            row["name"],
            f"{row['bytes']:,}" if row.get("bytes") else "-",
            (f"{scored['psnr_db']:.2f} / {scored['psnr_pooled_db']:.2f} dB{star}" if scored else "not measured"),
            f"{scored['ssim']:.4f}{star}" if scored else "-",
            *[_db(row["quality"].get(part, {}).get("psnr_db"), star) for part in others],
            _db(scored.get("psnr_vs_pytorch_db"), star),
            *[_fmt_latency(row, t) for t in threads],
            f"{last['images_per_s']:.0f}" if last else "-",
            f"{100 * last['share_of_fp32_peak']:.1f}%" if last else "-",
            "; ".join(row.get("notes", [])),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    machine = report["machine"]
    peaks = ", ".join(f"{v:.0f} GFLOP/s at {k} thr" for k, v in machine["peak_fp32_gflops"].items())
    described = {"test": "held-out test", "val": "validation",
                 "test-real": "real-photo test (a person never trained on)"}
    pairs = ", ".join(f"{n} {described[part]} pairs" for part, n in report["pairs"].items())
    lines += [
        "",
        f"Headline: the {'held-out test' if headline == 'test' else 'validation'} split. {pairs} at "
        f"{report['image_size']}x{report['image_size']}; PSNR is the mean of per-image PSNR (pooled: one MSE over all "
        f"pixels); PSNR vs PyTorch is pooled. {report['parameters']:,} parameters, "
        f"{report['macs'] / 1e9:.3f} GMAC per image; batch 1.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; measured fp32 matmul peak {peaks}. "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items()) + ".",
    ]
    lines += region_lines(report)
    if any(row.get("stand_in") for row in report["rows"]):
        lines.append("\\* not run in its runtime here; figures from the stand-in check named in the notes.")
    gates = report["gates"]
    verdict = "all gates passed" if not gates["failures"] else "FAILED: " + "; ".join(gates["failures"])
    lines.append(f"Gates ({gates['split']} split): at most {gates['max_drop_db']} dB below PyTorch on truth"
                 + (f", at least {gates['min_psnr_db']} dB vs truth" if gates["min_psnr_db"] is not None else "")
                 + f": {verdict}.")
    lines += looks_lines(report)
    lines += mobile_lines(report.get("mobile"))
    lines += live_lines(report.get("live"))
    return "\n".join(lines)


def region_lines(report: dict) -> list[str]:
    """A model that reads the face's region maps beside it: which, and how many faces' maps were empty."""
    names = report.get("region_inputs")
    if not names:
        return []
    counts = report.get("region_maps", {})
    empty = ", ".join(f"{part} {count['empty']} of {count['faces']}" for part, count in counts.items())
    return [f"The model reads the face's region maps beside it ({', '.join(names)}): every row is fed each face's "
            "own, drawn from the face mesh on its image as training draws them (train/region_maps.py; the browser "
            "rows: the page's own mesh run); empty "
            f"where the mesh found no face ({empty or 'none drawn'})."]


def looks_lines(report: dict) -> list[str]:
    """A file of several looks: each look's PSNR on its own faces (mean per image), per model and split."""
    if not report.get("looks"):
        return []
    headline = report["headline_split"]
    parts = [headline] + [part for part in report["pairs"] if part != headline]
    lines = ["", "Per look (each look's own recorded faces, through its one-hot look input):", "",
             "| look | model | " + " | ".join(f"PSNR {part}" for part in parts) + f" | vs PyTorch ({headline}) |",
             "|" + "---|" * (len(parts) + 3)]
    for name in report["looks"]:
        for row in (row for row in report["rows"] if name in row.get("looks", {})):
            scored = row["looks"][name]
            star = " *" if row.get("stand_in") else ""
            cells = [name, row["name"], *[_db(scored.get(part, {}).get("psnr_db"), star) for part in parts],
                     _db(scored.get(headline, {}).get("psnr_vs_pytorch_db"), star)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["format"] != "baseline"]
    names = [r["format"] for r in rows]
    fig, (ax_lat, ax_size) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(report["threads"])
    for i, threads in enumerate(report["threads"]):
        values = [r["latency"].get(str(threads), {}).get("median_ms", np.nan) for r in rows]
        ax_lat.bar(np.arange(len(rows)) + i * width, values, width, label=f"{threads} thread(s)")
    ax_lat.set_xticks(np.arange(len(rows)) + width * (len(report["threads"]) - 1) / 2, names, rotation=20)
    ax_lat.set(ylabel="median latency, ms (batch 1)", title="CPU latency (missing bar = not measured)")
    ax_lat.legend()
    sizes = [(r["bytes"] or 0) / 1000 for r in rows]
    ax_size.bar(names, sizes, color=["tab:gray" if not r.get("shipped") else "tab:green" for r in rows])
    ax_size.axhline(SIZE_BUDGET_BYTES / 1000, color="red", ls="--", lw=1,
                    label=f"{SIZE_BUDGET_BYTES / 1000:.0f} KB budget (shipped files)")
    ax_size.set(ylabel="KB on disk", title="size (grey = not shipped)")
    ax_size.tick_params(axis="x", rotation=20)
    ax_size.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_size_quality(report: dict, path: Path) -> Path | None:
    """Each size/quality search an export recorded (the .mlpackage's bits per layer): bytes vs the
    ground-truth PSNR given up against PyTorch, step by step."""
    rows = [r for r in report["rows"] if r.get("size_quality")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for row in rows:
        steps = row["size_quality"]
        ax.plot([s["bytes"] / 1000 for s in steps], [s["drop_db"] for s in steps], "o-", label=row["format"])
        for step in steps:
            ax.annotate(step["bits"], (step["bytes"] / 1000, step["drop_db"]), fontsize=7, rotation=20,
                        xytext=(3, 3), textcoords="offset points")
    ax.axvline(SIZE_BUDGET_BYTES / 1000, color="red", ls="--", lw=1, label=f"{SIZE_BUDGET_BYTES / 1000:.0f} KB budget")
    ax.set(xlabel="KB on disk", ylabel="dB below PyTorch (stand-in, validation faces)",
           title="Core ML ML Program: bits per layer, size vs quality (search path)")
    ax.invert_xaxis()
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


CAMERA_STAGES = ("draw", "track", "crop", "model", "compose", "show")  # the page's own work on a frame


def plot_camera(report: dict, path: Path) -> Path | None:
    """The page's camera (the row that measured it): its own ms per frame, stage by stage (median run),
    per camera rate, against the camera's frame interval; frames/s made up in the labels."""
    cameras = next((row["camera"] for row in report["rows"] if row.get("camera")), None)
    if not cameras:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [f"{c['camera_fps']} frames/s camera:\n{c['median_fps']:.1f} made up" for c in cameras]
    bottom = np.zeros(len(cameras))
    for stage in CAMERA_STAGES:
        values = np.array([c["median_run_ms"].get(stage) or 0.0 for c in cameras])
        ax.bar(labels, values, 0.5, bottom=bottom, label=stage)
        bottom += values
    p90 = [c.get("median_run_p90_main_ms") or np.nan for c in cameras]
    ax.plot(labels, p90, "kv", label="p90 of the page's work")
    for x, camera in enumerate(cameras):
        interval = 1000 / camera["camera_fps"]
        ax.hlines(interval, x - 0.35, x + 0.35, colors="red", linestyles="--", lw=1)
        ax.annotate(f"{interval:.1f} ms between frames", (x + 0.35, interval), fontsize=8, color="red",
                    xytext=(3, 2), textcoords="offset points")
    ax.set(ylabel="ms per frame (median run)", xlim=(-0.5, len(cameras) - 0.1),
           title=f"the page's camera, {cameras[0]['size']}: {cameras[0].get('runtime', '')}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return save_figure(fig, path)


def sample_grid(samples: dict[str, torch.Tensor], path: Path) -> Path:
    """One row per face, one column per model: input | each model | target."""
    order = ["input"] + [k for k in samples if k not in ("input", "target")] + ["target"]
    columns = [samples[k].clamp(0, 1) for k in order]
    rows = [np.concatenate([(c[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for c in columns], axis=1)
            for i in range(len(columns[0]))]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
    write_text(path.with_suffix(".txt"), "columns: " + " | ".join(order) + "\n")
    return path


def looks_grid(grid: dict[str, torch.Tensor], path: Path) -> Path:
    """One row per face: the input, then per look the made-up face and its residual x4 (grey = no change)."""
    source = grid["input"].clamp(0, 1)
    columns, labels = [source], ["input"]
    for name, made_up in ((k, v) for k, v in grid.items() if k != "input"):
        columns += [made_up.clamp(0, 1), ((made_up - source) * 4 + 0.5).clamp(0, 1)]
        labels += [name, f"{name} residual x4"]
    rows = [np.concatenate([(c[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for c in columns], axis=1)
            for i in range(len(source))]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
    write_text(path.with_suffix(".txt"), "columns: " + " | ".join(labels) + "\n")
    return path


def write_reports(report: dict, samples: dict[str, torch.Tensor], out: Path,
                  looks: dict[str, torch.Tensor] | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)  # temp files of an earlier benchmark that was killed mid-write
    table = markdown_table(report)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "plot": out / "latency_size.png",
             "samples": out / "samples.png"}
    write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    write_text(paths["markdown"], "# TinyBeauty benchmark\n\n" + table + "\n")
    plot(report, paths["plot"])
    sample_grid(samples, paths["samples"])
    if plot_size_quality(report, out / "size_quality.png"):
        paths["size_quality"] = out / "size_quality.png"
    if plot_camera(report, out / "camera.png"):
        paths["camera"] = out / "camera.png"
    if looks:  # a file of several looks: each look on the same faces (looks.txt names the columns)
        paths["looks"] = looks_grid(looks, out / "looks.png")
    return paths | {"markdown_table": table}
