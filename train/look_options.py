"""The command line's looks, read without torch: ``--looks`` (built-in looks, or a choice of a parent
folder's looks), ``--data NAME=DIR`` (repeated) and ``--data PARENT`` (whose subfolders are the looks'
pair folders), resolved into ``TrainConfig.looks`` and ``TrainConfig.look_data``; where the built-in
looks' pairs live. Each problem is a ValueError that says what to give instead. The training side of
several looks is train/multilook.py."""

from __future__ import annotations

from pathlib import Path

from models.variants import DEFAULT_LOOK
from train.config import PAIR_LAYOUTS
from train.looks import LOOKS, look_named


def look_options(data: list[str] | None, looks: str | None) -> dict:
    """--data (its values, repeatable) and --looks as the config holds them: ``data`` (one folder of pairs,
    or the parent of the looks' folders), ``looks`` and ``look_data`` (each look's folder)."""
    if data and is_look_data(data):
        if looks:
            raise ValueError("--looks and --data NAME=DIR both name the looks; give them one way")
        look_data = parse_look_data(data)
        return {"looks": list(look_data), "look_data": look_data}
    if not data:
        return {"looks": parse_look_names(looks)} if looks else {}
    subfolders = look_subfolders(Path(data[0]))
    if subfolders is None:
        if looks:
            raise ValueError(f"--looks picks built-in looks or the looks' subfolders of --data, but {data[0]} is "
                             "one folder of pairs; give several looks' pairs as --data NAME=DIR")
        return {"data": data[0]}
    names = split_look_names(looks, "--looks") if looks else list(subfolders)
    unknown = [name for name in names if name not in subfolders]
    if unknown:
        raise ValueError(f"--looks {', '.join(unknown)}: {data[0]} has no such subfolder of pairs; its looks are "
                         f"{', '.join(subfolders)}")
    return {"data": data[0], "looks": names, "look_data": {name: subfolders[name] for name in names}}


def parse_look_names(text: str) -> list[str]:
    """``--looks berry,smoky`` (built-in looks) -> the names, each in the catalogue and none twice."""
    names = split_look_names(text, "--looks")
    for name in names:
        try:
            look_named(name)
        except KeyError as error:
            raise ValueError(f"--looks: {error.args[0]}") from None
    return names


def split_look_names(text: str, option: str) -> list[str]:
    """Comma-separated names, none twice."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{option} {text!r} names no look; the catalogue has {', '.join(LOOKS)}")
    return checked_unique(names, option)


def checked_unique(names: list[str], option: str) -> list[str]:
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"{option} names the look {', '.join(twice)} twice; give each look once")
    return names


def parse_look_data(values: list[str]) -> dict[str, str]:
    """``--data NAME=DIR`` (repeated) -> {name: folder} in the order given."""
    pairs = [value.split("=", 1) for value in values]
    bad = [value for value, pair in zip(values, pairs, strict=True) if len(pair) != 2 or not all(pair)]
    if bad:
        raise ValueError(f"--data {bad[0]!r}: give several looks' pairs as NAME=DIR, each once (or one folder alone)")
    checked_unique([name for name, _ in pairs], "--data NAME=DIR")
    return {name: folder for name, folder in pairs}


def is_look_data(values: list[str]) -> bool:
    """Whether ``--data`` values name looks (NAME=DIR) rather than one folder of pairs."""
    return len(values) > 1 or ("=" in values[0] and not Path(values[0]).is_dir())


def has_pair_layout(folder: Path) -> bool:
    """Whether ``folder`` is laid out as pairs (pairs.csv, or a source and a target folder); its files
    are checked when the run reads them (train/pairs.py)."""
    return (folder / "pairs.csv").is_file() or any((folder / source).is_dir() and (folder / target).is_dir()
                                                    for source, target in PAIR_LAYOUTS)


def look_subfolders(parent: Path) -> dict[str, str] | None:
    """A folder without pairs of its own whose subfolders hold pairs: {subfolder name: path}; else None."""
    if not parent.is_dir() or has_pair_layout(parent):
        return None
    found = {folder.name: str(folder) for folder in sorted(parent.iterdir())
             if folder.is_dir() and not folder.name.startswith(".") and has_pair_layout(folder)}
    return found or None


def look_problems(look_data: dict[str, str]) -> list[str]:
    """One line for each NAME=DIR whose DIR holds no pairs."""
    return [f"--data {name}={folder}: {folder} has no pairs.csv, source/ + target/ or non-makeup/ + makeup/ "
            "folders; put same-named images in source/ and target/, or list them in pairs.csv"
            for name, folder in look_data.items() if not has_pair_layout(Path(folder))]


def builtin_folder(root: Path, look: str) -> Path:
    """Where the built-in pairs of ``look`` are: ``root`` for the default look, else beside it: data/synthetic-smoky."""
    return Path(root) if look == DEFAULT_LOOK else Path(root).with_name(f"{Path(root).name}-{look}")


# Options --add-look cannot take, with what to do instead: the look trains on the network of --from.
ADD_LOOK_CONFLICTS = {
    "looks": "--looks names the looks of a new network; --add-look takes the looks of --from and adds one",
    "resume": "--add-look starts a new run from --from (a few minutes); run it again rather than --resume",
}


def add_look_options(given: dict) -> dict:
    """``--add-look NAME --from CHECKPOINT [--data DIR]`` as the config holds them: ``add_look``,
    ``start_from`` and ``data`` (the new look's pairs; none for a built-in look, whose pairs are rendered
    into :func:`builtin_folder`). What needs the checkpoint itself (a look it has, its variant and image
    size) is checked when the run reads it (train/add_look.py)."""
    name, start_from, data = given.get("add_look"), given.get("start_from"), given.get("data")
    if not name:
        raise ValueError("--from names the checkpoint a look is added to: give --add-look NAME too")
    if not start_from:
        raise ValueError(f"--add-look {name} needs --from CHECKPOINT, the run to add the look to "
                         "(e.g. --from runs/looks/tinybeauty_best_psnr.pt)")
    if not Path(start_from).is_file():
        raise ValueError(f"--from {start_from}: no such file; name a checkpoint written by python -m train")
    for option, why in ADD_LOOK_CONFLICTS.items():
        if given.get(option):
            raise ValueError(why)
    if given.get("qat_epochs"):
        raise ValueError(f"--qat-epochs {given['qat_epochs']}: --add-look trains the new look in float (the "
                         "network it adds to keeps its quantization-aware state); drop --qat-epochs")
    return {"add_look": name, "start_from": start_from, "qat_epochs": 0} | added_look_data(name, data)


def added_look_data(name: str, data: list[str] | None) -> dict:
    """Where an added look's pairs are: ``--data DIR`` or ``--data NAME=DIR``; none for a built-in look."""
    if not data:
        try:
            look_named(name)
        except KeyError:
            raise ValueError(f"--add-look {name} is not a built-in look ({', '.join(LOOKS)}): give its pairs "
                             "with --data DIR") from None
        return {}
    if len(data) > 1:
        raise ValueError(f"--add-look adds one look: give its pairs as one --data DIR, not {len(data)}")
    folder = data[0]
    if is_look_data(data):
        named, folder = parse_look_data(data).popitem()
        if named != name:
            raise ValueError(f"--data {data[0]} names the look {named}, but --add-look adds {name}; give --data DIR")
    if not has_pair_layout(Path(folder)):
        raise ValueError(f"--data {folder}: no pairs.csv, source/ + target/ or non-makeup/ + makeup/ folders; "
                         f"give the pairs of {name}, same-named images in source/ and target/")
    return {"data": folder}
