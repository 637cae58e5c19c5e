"""Paths stay inside the input: CSV rows (`..`, absolute, symlinks) and class-tree entries that
lead outside it are refused unless --allow_outside_input; names that are not UTF-8 are kept,
escaped; empty classes and a class folder that loops back to the root are warned about."""

import functools
import os

import numpy as np
import pytest
from PIL import Image

from conftest import read_records, write_config, write_csv
from pipeline.core import schema
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset


def _image(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


_config = functools.partial(write_config, image_size=6, shards=1, val_fraction=0.0)


def _paths(out):
    return sorted(path for _, _, path in read_records(out, schema.TRAIN))


@pytest.fixture
def outside_csv(tmp_path):
    """A CSV whose rows reach outside its folder three ways, beside two rows that do not."""
    folder = tmp_path / "data"
    for i in range(2):
        _image(str(folder / "images" / f"{i}.png"), i)
    _image(str(tmp_path / "secret" / "up.png"), 7)
    _image(str(tmp_path / "secret" / "absolute.png"), 8)
    _image(str(tmp_path / "secret" / "linked.png"), 9)
    os.symlink(tmp_path / "secret" / "linked.png", folder / "images" / "link.png")
    rows = [("images/0.png", "a"), ("images/1.png", "b"), ("../secret/up.png", "a"),
            (str(tmp_path / "secret" / "absolute.png"), "b"), ("images/link.png", "a")]
    return write_csv(folder / "train.csv", ["image", "label"], rows)


def test_csv_rows_outside_its_folder_are_refused_naming_them(outside_csv, tmp_path):
    with pytest.raises(InputError, match=r"3 row\(s\) lead outside .*line 4: '\.\./secret/up"
                                         r".*line 5: .*absolute\.png.*line 6: 'images/link\.png'"
                                         r".*--allow_outside_input"):
        write_dataset(_config(outside_csv, tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / schema.MANIFEST_NAME)


def test_csv_rows_outside_its_folder_are_read_with_the_flag(outside_csv, tmp_path):
    write_dataset(_config(outside_csv, tmp_path / "out", allow_outside_input=True))
    assert len(_paths(tmp_path / "out")) == 5


def test_an_absolute_row_inside_the_folder_is_inside(tmp_path):
    folder = tmp_path / "data"
    _image(str(folder / "a.png"))
    csv = write_csv(folder / "train.csv", ["image", "label"], [(str(folder / "a.png"), "x")])
    write_dataset(_config(csv, tmp_path / "out"))
    assert _paths(tmp_path / "out") == [str(folder / "a.png")]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    _image(str(root / "cat" / "0.png"), 0)
    _image(str(root / "dog" / "1.png"), 1)
    return root


def test_class_tree_entries_leaving_it_are_refused_then_read_with_the_flag(tree, tmp_path):
    _image(str(tmp_path / "elsewhere" / "owl" / "2.png"), 2)
    _image(str(tmp_path / "elsewhere" / "3.png"), 3)
    os.symlink(tmp_path / "elsewhere" / "owl", tree / "owl")  # a class folder
    os.symlink(tmp_path / "elsewhere" / "3.png", tree / "cat" / "3.png")  # an image
    with pytest.raises(InputError, match=r"2 entr.* lead outside .*cat/3\.png.*owl.*"
                                         r"--allow_outside_input"):
        write_dataset(_config(tree, tmp_path / "out"))
    write_dataset(_config(tree, tmp_path / "out", allow_outside_input=True))
    assert _paths(tmp_path / "out") == ["cat/0.png", "cat/3.png", "dog/1.png", "owl/2.png"]


def test_a_class_folder_looping_back_to_the_root_is_skipped_with_a_warning(tree, tmp_path,
                                                                          caplog):
    os.symlink(tree, tree / "loop")
    os.symlink("..", tree / "dog" / "up")  # below a class: never walked into
    summary = write_dataset(_config(tree, tmp_path / "out"))
    assert summary.manifest.classes == ("cat", "dog")
    assert _paths(tmp_path / "out") == ["cat/0.png", "dog/1.png"]
    assert any("'loop' is a symlink to" in w and "skipped" in w for w in summary.warnings)
    assert "skipped" in caplog.text


def test_symlink_loops_are_skipped_or_rejected_never_a_traceback(tree, tmp_path):
    os.symlink(tree / "self", tree / "self")  # a class folder that is a link to itself
    os.symlink("loopy.png", tree / "cat" / "loopy.png")  # an image that is one
    summary = write_dataset(_config(tree, tmp_path / "out", max_reject_fraction=0.5))
    assert summary.manifest.classes == ("cat", "dog")
    assert any("class folder 'self' cannot be opened (Too many levels of symbolic links): "
               "skipped" in w for w in summary.warnings), summary.warnings
    rejects = (tmp_path / "out" / "rejects.csv").read_text().splitlines()
    assert len(rejects) == 2 and rejects[1].startswith("cat/loopy.png,unreadable")
    assert "Too many levels of symbolic links" in rejects[1]


def test_an_empty_class_folder_is_a_warning(tree, tmp_path):
    os.makedirs(tree / "owl")
    summary = write_dataset(_config(tree, tmp_path / "out"))
    assert summary.manifest.classes == ("cat", "dog", "owl")
    assert any("no image files" in w and "'owl'" in w for w in summary.warnings)


def test_names_that_are_not_utf8_are_kept_escaped(tree, tmp_path):
    cat = os.fsencode(tree / "cat")
    _image(os.fsdecode(cat + b"/caf\xe9.png"), 5)  # Latin-1 'café.png'
    _image(os.fsdecode(os.fsencode(tree) + b"/\xff-bird/4.png"), 4)  # a class named so too
    summary = write_dataset(_config(tree, tmp_path / "out"))
    assert _paths(tmp_path / "out") == ["\\xff-bird/4.png", "cat/0.png", "cat/caf\\xe9.png",
                                        "dog/1.png"]
    assert summary.manifest.classes == ("\\xff-bird", "cat", "dog")
    assert any("not valid UTF-8" in w and "caf\\xe9" in w for w in summary.warnings)
