"""The JSON files faces/ shares with the page are read by one reader: a damaged copy of each is refused
with a message naming the copy and the file to restore from git."""

import json

import pytest

from faces.detection import SEARCH_FILE, SEARCH_KEYS, load_search_bounds
from faces.regions import KEYS, REGIONS_FILE, load_definition
from faces.tracking_step import PARAM_KEYS, PARAMS_FILE, load_params

READERS = [(load_search_bounds, SEARCH_FILE, SEARCH_KEYS), (load_definition, REGIONS_FILE, KEYS),
           (load_params, PARAMS_FILE, PARAM_KEYS)]


@pytest.mark.parametrize(("reader", "shipped", "keys"), READERS)
def test_a_copy_without_a_key_names_the_key_and_the_file_to_restore(reader, shipped, keys, tmp_path):
    values = json.loads(shipped.read_text(encoding="utf-8"))
    dropped = keys[-1]
    del values[dropped]
    damaged = tmp_path / shipped.name
    damaged.write_text(json.dumps(values), encoding="utf-8")
    restore = rf"restore it from git \(git checkout -- faces/{shipped.name}\)"
    with pytest.raises(ValueError, match=rf"lacks {dropped}: {restore}"):
        reader(damaged)


@pytest.mark.parametrize(("reader", "shipped", "_"), READERS)
def test_an_unreadable_copy_names_itself_and_the_file_to_restore(reader, shipped, _, tmp_path):
    damaged = tmp_path / shipped.name
    damaged.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"cannot be read .*git checkout -- faces/{shipped.name}"):
        reader(damaged)


@pytest.mark.parametrize(("reader", "shipped", "keys"), READERS)
def test_the_shipped_files_read(reader, shipped, keys):
    assert set(keys) <= set(reader(shipped))
