"""--image_path: a CSV whose image column holds ids, not paths (Plant Pathology's `image_id`,
PetFinder's `Id`: images/<id>.jpg), written without reshaping the CSV, and predicted with the
CSV's own ids as a Kaggle submission wants them."""

import csv
import functools
import json
import os

import pytest

from conftest import folder_config, train_tiny, write_csv, write_images
from pipeline import dataset
from pipeline.core import schema
from pipeline.writing import plan
from pipeline.writing.sources import InputError
from pipeline.writing.writer import write_dataset

TEMPLATE = "images/{}.png"


@pytest.fixture
def id_folder(tmp_path):
    """images/<i>.png for 16 images; train.csv `image_id,label` lists 12 by id (no folder, no
    extension), test.csv `image_id` the other 4, in a shuffled order."""
    rows = write_images(str(tmp_path), 16)
    ids = [os.path.splitext(os.path.basename(path))[0] for path, _ in rows]
    write_csv(tmp_path / "train.csv", ["image_id", "label"],
              [(image_id, label) for image_id, (_, label) in zip(ids[:12], rows)])
    write_csv(tmp_path / "test.csv", ["image_id"], [(image_id,) for image_id in
                                                    ("15", "12", "14", "13")])
    return tmp_path


_config = functools.partial(folder_config, image_column="image_id", image_path=TEMPLATE,
                            image_size=8, shards=2, val_fraction=0.25)


def test_the_template_makes_each_ids_path_and_the_manifest_records_it(id_folder):
    write_dataset(_config(id_folder))
    out = str(id_folder / "out")
    manifest = schema.read_manifest(out)
    assert manifest.flags["image_path"] == TEMPLATE
    assert manifest.split("train").count + manifest.split("val").count == 12
    assert dataset.split_paths(out, "test") == [f"images/{i}.png" for i in (15, 12, 14, 13)]
    written = sorted(dataset.split_paths(out, "train") + dataset.split_paths(out, "val"))
    assert written == sorted(f"images/{i}.png" for i in range(12))


def test_a_dataset_without_the_template_does_not_record_it(id_folder):
    write_csv(id_folder / "paths.csv", ["image", "label"],
              [(f"images/{i}.png", "cat") for i in range(4)])
    write_dataset(_config(id_folder, input=str(id_folder / "paths.csv"), test_input=None,
                          image_column="image", image_path=None, val_fraction=0.0, shards=1))
    doc = json.loads((id_folder / "out" / schema.MANIFEST_NAME).read_text())
    assert "image_path" not in doc["flags"]


def test_an_id_without_its_image_is_a_reject_named_by_its_path(id_folder):
    os.remove(id_folder / "images" / "3.png")
    write_dataset(_config(id_folder, max_reject_fraction=0.5))
    with open(id_folder / "out" / schema.REJECTS_NAME, newline="") as f:
        assert [row["path"] for row in csv.DictReader(f)] == ["images/3.png"]


@pytest.mark.parametrize("template, error, said", [
    ("images/.png", plan.PlanError, "needs exactly one {}"),
    ("images/{}/{}.png", plan.PlanError, "needs exactly one {}"),
])
def test_a_template_without_one_slot_is_refused(id_folder, template, error, said):
    with pytest.raises(error, match=said):
        write_dataset(_config(id_folder, image_path=template))
    assert not (id_folder / "out").exists()


def test_the_template_is_refused_for_a_folder_of_classes(id_folder):
    write_images(str(id_folder / "tree" / "cat"), 2)
    with pytest.raises(InputError, match="a folder of class folders"):
        write_dataset(_config(id_folder, input=str(id_folder / "tree"), test_input=None))


@pytest.mark.slow
def test_predict_writes_the_test_csvs_own_ids_under_its_column_name(id_folder, tmp_path):
    from pipeline.training import predict

    write_dataset(_config(id_folder))
    workdir = str(tmp_path / "run")
    train_tiny(id_folder / "out", workdir)
    probabilities = tmp_path / "probabilities.csv"
    output, rows = predict.write_predictions(workdir, output=str(tmp_path / "sub.csv"),
                                             probabilities=str(probabilities))
    with open(output, newline="") as f:
        submission = list(csv.reader(f))
    assert submission[0] == ["image_id", "label"] and rows == 4
    assert [row[0] for row in submission[1:]] == ["15", "12", "14", "13"]
    with open(probabilities, newline="") as f:
        table = list(csv.reader(f))
    assert table[0][0] == "image_id" and [row[0] for row in table[1:]] == ["15", "12", "14", "13"]
