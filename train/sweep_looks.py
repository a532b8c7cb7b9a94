"""A catalogue's seed sweep (``python -m train.sweep ... -- --looks A,B,...``): each look's figures per seed, and with
``--alone`` each look trained alone on its own pairs for the same epochs, so that every look is judged against its
own single-look model (the catalogue's aim: within :data:`WITHIN_DB` of it, docs/training.md).

A catalogue's epoch holds every look's pairs, so the same epochs give each look's pairs as many passes in both runs
(the same training per look). The alone run takes the catalogue's options but its look, and the batch of one look
(the preset's, unless ``--batch-size`` was given); its split is the look's own split by the same seed, so both runs
hold out the same faces.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from train.config import TrainConfig, preset_values

WITHIN_DB = 0.3  # the catalogue's aim: each look within this of its own single-look model (mean over seeds)
# The held-out parts a look is judged on: the test split (the built-in set's: cartoons), and the built-in set's real
# person held out (train/builtin.py).
PARTS = {"test": "test split", "test-real": "real-photo test split"}
LOOK_FIGURES = ("test_psnr_db", "test_baseline_db", "val_psnr_db", "test-real_psnr_db", "test-real_baseline_db")


def alone_config(recipe: TrainConfig, given: set[str], name: str, out: Path) -> TrainConfig:
    """The single-look run of the catalogue ``recipe``'s look ``name``: the same options, its own pairs, the same
    epochs, and one look's batch unless the command line gave one."""
    batch = recipe.batch_size if "batch_size" in given else preset_values(recipe.preset, 1).get(
        "batch_size", TrainConfig().batch_size)
    look_data = {name: recipe.look_data[name]} if recipe.look_data else None
    return replace(recipe, looks=[name], look_data=look_data, batch_size=batch, blend_share=0.0, out=str(out))


def look_figures(scores: dict, name: str) -> dict:
    """One look's figures of a run's held-out scores (:func:`train.trainer.score_checkpoint`; a catalogue's, or one
    look's own)."""
    figures = scores["looks"][name] if "looks" in scores else scores
    return {key: figures[key] for key in LOOK_FIGURES if key in figures}


def shipped_figures(report: dict, name: str) -> dict:
    """One look's PSNR in the shipped int8 ONNX file, per held-out part, from a benchmark report (none where the
    report has no ``.onnx``: ``--formats`` without it)."""
    row = next((row for row in report["rows"] if row["format"] == "onnx"), None)
    if row is None:
        return {}
    quality = row["looks"][name] if "looks" in row else row["quality"]  # a one-look file's figures are its look's
    return {f"shipped_{part}_psnr_db": quality[part]["psnr_db"] for part in PARTS if part in quality}


def flat(name: str, figures: dict, prefix: str = "") -> dict:
    return {f"{name}.{prefix}{key}": value for key, value in figures.items()}


def versus_alone(row: dict, name: str) -> dict:
    """Each part's catalogue-minus-alone difference of a look in a seed's ``row`` (PyTorch, and the shipped file)."""
    found = {}
    for part in PARTS:
        for kind in ("", "shipped_"):
            mine, alone = f"{name}.{kind}{part}_psnr_db", f"{name}.alone_{kind}{part}_psnr_db"
            if mine in row and alone in row:
                found[f"{name}.{kind}versus_alone_{part}_db"] = row[mine] - row[alone]
    return found


def cell(summary: dict, key: str, signed: bool = False) -> str:
    if key not in summary:
        return "-"
    figure = summary[key]
    return f"{figure['mean']:{'+' if signed else ''}.2f} ({figure['std']:.2f})"


def measured(rows: list[dict], looks: list[str], key: str) -> list[str]:
    """The held-out parts some row holds ``key`` of (``{part}`` in it) for the first look."""
    return [part for part in PARTS if any(f"{looks[0]}.{key.format(part=part)}" in row for row in rows)]


def looks_markdown(looks: list[str], rows: list[dict], summary: dict, recipe_line: str) -> str:
    """The catalogue's table: per look the mean (spread) over seeds of its PSNR beside its no-makeup baseline, and
    with ``--alone`` against its own model, cartoon test / real-photo test."""
    alone = bool(measured(rows, looks, "alone_{part}_psnr_db"))
    shipped = bool(measured(rows, looks, "shipped_{part}_psnr_db"))
    head = ["look", "no makeup", "catalogue (PyTorch)", *(["alone (PyTorch)", "catalogue - alone (PyTorch)"]
                                                          if alone else []),
            *(["catalogue - alone (int8 .onnx)"] if alone and shipped else []),
            *([f"at most {WITHIN_DB} dB under alone (both parts)"] if alone else [])]
    note = (f"{len(rows)} seed(s); each cell: test split (the built-in set's cartoons) / real-photo test split (the "
            "built-in set's held-out person), dB, mean (spread: sample standard deviation over the seeds)")
    lines = [recipe_line, "", note, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pair(name: str, key: str, signed: bool = False) -> str:
        return " / ".join(cell(summary, f"{name}.{key.format(part=part)}", signed) for part in PARTS)

    for name in looks:
        cells = [name, pair(name, "{part}_baseline_db"), pair(name, "{part}_psnr_db")]
        if alone:
            cells += [pair(name, "alone_{part}_psnr_db"), pair(name, "versus_alone_{part}_db", True)]
            if shipped:
                cells.append(pair(name, "shipped_versus_alone_{part}_db", True))
            judged = "shipped_" if shipped else ""
            means = [summary[key]["mean"] for part in PARTS
                     if (key := f"{name}.{judged}versus_alone_{part}_db") in summary]
            cells.append("yes" if means and min(means) >= -WITHIN_DB else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def looks_figure(looks: list[str], rows: list[dict], path: Path) -> Path | None:
    """``path``: each look's catalogue-minus-alone difference per seed (dots) and its mean (bar), cartoon and real
    test, PyTorch and the int8 file, with the aim's line; None without alone runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.atomic import atomic_path

    kinds = [kind for kind in ("", "shipped_") if measured(rows, looks, kind + "versus_alone_{part}_db")]
    parts = measured(rows, looks, "versus_alone_{part}_db")
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(parts), figsize=(1 + (1.5 + len(looks)) * len(parts), 3.8), sharey=True,
                             squeeze=False)
    width = 0.8 / len(kinds)
    for ax, part in zip(axes[0], parts, strict=True):
        title = PARTS[part]
        for k, kind in enumerate(kinds):
            label = "int8 .onnx" if kind else "PyTorch"
            for x, name in enumerate(looks):
                values = [row[key] for row in rows if (key := f"{name}.{kind}versus_alone_{part}_db") in row]
                if not values:
                    continue
                at = x - 0.4 + width * (k + 0.5)
                ax.bar(at, sum(values) / len(values), width * 0.9, color=f"C{k}", alpha=0.5,
                       label=label if x == 0 else None)
                ax.plot([at] * len(values), values, "o", color=f"C{k}", markersize=4)
        ax.axhline(-WITHIN_DB, color="red", linestyle="--", linewidth=1, label=f"the aim: at most {WITHIN_DB} dB under")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(xticks=range(len(looks)), xticklabels=looks, title=title, ylabel="catalogue - alone (dB)")
        ax.legend(fontsize=8)
    fig.suptitle(f"each look in the catalogue against its own model ({len(rows)} seed(s): dots; bars: mean)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
