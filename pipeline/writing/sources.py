"""Find the source images of a dataset: a CSV file, a class-folder tree, or the bundled sample.

Every input becomes a list of `SourceImage` (path relative to the input, the file to open, a
label index) plus the class names. Problems with the *listing* (missing column, empty CSV,
duplicate paths) raise `InputError` before anything is written; problems with an *image* are
found later, when it is decoded, and only reject that image.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from pipeline import errors
from pipeline.core import schema
from pipeline.writing import boundary

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
# Duplicates and other listing errors name at most this many examples.
MAX_EXAMPLES = 5


class InputError(errors.PipelineError, ValueError):
    """The input listing is unusable; nothing has been written."""


@dataclasses.dataclass(frozen=True)
class SourceImage:
    path: str  # relative to the input (as listed in the CSV, or under the tree root), '/'-separated
    file: str  # what to open
    label: int  # class index, or schema.UNLABELED (schema.LABELED in a multi-label listing)
    # Multi-label listings: the indices of the image's classes (ascending; may be empty).
    tags: tuple[int, ...] | None = None
    values: tuple[float, ...] | None = None  # regression listings: the row's targets
    features: tuple[float, ...] | None = None  # with --feature_columns: the row's values


@dataclasses.dataclass(frozen=True)
class Listing:
    images: tuple[SourceImage, ...]
    classes: tuple[str, ...]  # empty for an unlabeled CSV (a TFDS split keeps its ClassLabel's)
    labeled: bool
    description: str  # for logs: "CSV data/train.csv (18,353 images, 176 classes)"
    # What decides the images' bytes when their paths do not (a TFDS split: its prepared
    # version, split and features); part of the write's fingerprint. Empty for files.
    source_id: str = ""
    warnings: tuple[str, ...] = ()  # for the summary: empty classes, skipped folders, ...
    target_kind: str = schema.CLASS  # MULTI_LABEL: each image's classes are its `tags`
    targets: tuple[str, ...] = ()  # REGRESSION: the target columns (each image's `values`)
    features: tuple[str, ...] = ()  # the --feature_columns (each image's `features`)


def load_listing(
    input_path: str, *, image_column: str = "image", label_column: str = "label",
    label_column_required: bool = False, allow_outside: bool = False,
    image_path: str | None = None, label_columns: Sequence[str] = (),
    multi_label: bool = False, label_delimiter: str = " ", target_columns: Sequence[str] = (),
    feature_columns: Sequence[str] = (),
) -> Listing:
    """A CSV file or a directory of class folders -> Listing. Paths that lead outside the
    input are refused unless `allow_outside` (pipeline.writing.boundary); with
    `feature_columns`, each image gets its row's values of them (a CSV's only)."""
    if os.path.isdir(input_path):
        if image_path is not None:
            raise InputError(f"--image_path={image_path} makes paths of a CSV's values; "
                             f"--input={input_path} is a folder of class folders")
        if multi_label or target_columns or feature_columns:
            flag = ("--multi_label" if multi_label else "--target_columns" if target_columns
                    else "--feature_columns")
            raise InputError(f"{flag} reads a CSV's columns; --input={input_path} is a folder "
                             "of class folders, one class per image")
        return list_class_tree(input_path, allow_outside=allow_outside)
    if os.path.isfile(input_path):
        listing = read_csv_listing(
            input_path, image_column=image_column, label_column=label_column,
            label_column_required=label_column_required, allow_outside=allow_outside,
            image_path=image_path, label_columns=label_columns, multi_label=multi_label,
            label_delimiter=label_delimiter, target_columns=target_columns,
        )
        return with_features(listing, input_path, feature_columns) if feature_columns \
            else listing
    raise InputError(
        f"--input={input_path!r} does not exist; give a CSV file (image,label columns) or a "
        "directory with one sub-folder per class"
    )


def read_csv_listing(
    csv_path: str, *, image_column: str = "image", label_column: str = "label",
    label_column_required: bool = False, allow_outside: bool = False,
    image_path: str | None = None, label_columns: Sequence[str] = (),
    multi_label: bool = False, label_delimiter: str = " ", target_columns: Sequence[str] = (),
) -> Listing:
    """Read `image[,label]` rows; paths are relative to the CSV's folder, or made of the image
    column's values by the `image_path` template (schema.path_from_value). With
    `label_columns`, each row's class is the one-hot column holding its 1; with `multi_label`
    or multi-hot columns, its classes are its tags (pipeline.writing.tags); with
    `target_columns`, its numbers (pipeline.writing.regression).

    Without a label column the listing is unlabeled (a Kaggle `test.csv`): every label is -1
    and the file order is kept, because predictions must come out in that order.
    """
    frame = _read_csv(csv_path)
    columns = list(frame.columns)
    if image_column not in columns:
        raise InputError(
            f"{csv_path}: no {image_column!r} column; it has {columns}. "
            "Name the image column with --image_column."
        )
    wanted = list(target_columns) or list(label_columns) or [label_column]
    missing = [name for name in wanted if name not in columns]
    labeled = not missing
    if missing and (label_column_required or len(missing) < len(wanted)):
        flag = ("--target_columns" if target_columns else "--label_columns" if label_columns
                else "--label_column")
        raise InputError(f"{csv_path}: no {', '.join(map(repr, missing))} column; it has "
                         f"{columns}. Name the label column(s) with {flag}.")
    if frame.empty:
        raise InputError(f"{csv_path}: the CSV has a header but no rows")
    paths = frame[image_column].tolist()
    base = os.path.dirname(os.path.abspath(csv_path))
    _refuse_blank_paths(csv_path, paths)
    if image_path is not None:
        paths = [schema.path_from_value(image_path, value) for value in paths]
    if not allow_outside:
        _refuse_rows_outside(csv_path, base, paths)
    _refuse_duplicates(csv_path, base, paths)
    if not labeled:
        images = tuple(
            SourceImage(p, os.path.join(base, p), schema.UNLABELED) for p in paths
        )
        return Listing(images, (), False, f"unlabeled CSV {csv_path} ({len(images):,} images)")
    if target_columns:
        from pipeline.writing import regression  # it reads this module's InputError

        return regression.listing(csv_path, frame, paths, base, target_columns)
    return _labeled_listing(csv_path, frame, paths, base, label_column, label_columns,
                            multi_label, label_delimiter)


def _labeled_listing(csv_path: str, frame, paths: Sequence[str], base: str, label_column: str,
                     label_columns: Sequence[str], multi_label: bool,
                     label_delimiter: str) -> Listing:
    """The listing of a CSV with classes: multi-label (pipeline.writing.tags), or one class
    a row (a class-name column or one-hot class columns)."""
    from pipeline.writing import tags  # it reads this module's InputError

    row_tags, classes = tags.row_tags(csv_path, frame, label_column, label_columns,
                                      multi_label, label_delimiter)
    if row_tags is not None:
        images = tuple(SourceImage(p, os.path.join(base, p), schema.LABELED, found)
                       for p, found in zip(paths, row_tags))
        return Listing(images, classes, True, tags.description(csv_path, images, classes),
                       target_kind=schema.MULTI_LABEL)
    names, classes = _class_names(csv_path, frame, label_column, label_columns)
    index = {name: i for i, name in enumerate(classes)}
    images = tuple(
        SourceImage(p, os.path.join(base, p), index[name]) for p, name in zip(paths, names)
    )
    return Listing(
        images, classes, True, f"CSV {csv_path} ({len(images):,} images, {len(classes)} classes)"
    )


def with_features(listing: Listing, csv_path: str, feature_columns: Sequence[str]) -> Listing:
    """`listing` (read_csv_listing's, in the CSV's row order) with each image's values of
    `feature_columns`; InputError naming a missing column or a cell that is no number."""
    from pipeline.writing import regression  # it reads this module's InputError

    frame = _read_csv(csv_path)
    missing = [name for name in feature_columns if name not in frame.columns]
    if missing:
        raise InputError(f"{csv_path}: no {', '.join(map(repr, missing))} column; it has "
                         f"{list(frame.columns)}. --feature_columns must be in --input and "
                         "--test_input alike")
    rows = regression.row_values(csv_path, frame, feature_columns, "--feature_columns")
    images = tuple(dataclasses.replace(image, features=row)
                   for image, row in zip(listing.images, rows))
    return dataclasses.replace(listing, images=images, features=tuple(feature_columns))


def _read_csv(csv_path: str):
    """The CSV as a pandas frame of text, or InputError saying why it is none."""
    import pandas as pd  # here, not at the top: worker processes never read a CSV

    try:
        # Everything as text: "007.jpg" must not become 7, and "NA" is a valid class name.
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{csv_path}: the CSV is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{csv_path}: not a readable CSV: {err}") from err


def _class_names(csv_path: str, frame, label_column: str,
                 label_columns: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """(each row's class name, the classes in label order): the label column's names, sorted;
    or the one-hot columns', in their order."""
    if label_columns:
        return _one_hot_names(csv_path, frame, label_columns), tuple(label_columns)
    names = frame[label_column].tolist()
    _refuse_empty_labels(csv_path, label_column, names)
    return names, sort_class_names(set(names))


def _refuse_empty_labels(csv_path: str, label_column: str, names: Sequence[str]) -> None:
    empty = [i + 2 for i, name in enumerate(names) if not name.strip()]  # +2: header, 1-based
    if empty:
        raise InputError(
            f"{csv_path}: empty {label_column!r} on line(s) {empty[:MAX_EXAMPLES]}"
            f"{' ...' if len(empty) > MAX_EXAMPLES else ''}; every row needs a label"
        )


def _one_hot_names(csv_path: str, frame, label_columns: Sequence[str]) -> list[str]:
    """Each row's class: the one of `label_columns` holding its single 1 (rows with another
    number of 1s are multi-label, which pipeline.writing.tags reads)."""
    from pipeline.writing import tags

    hot = tags.hot_matrix(csv_path, frame, label_columns)
    return [label_columns[column] for column in hot.argmax(axis=1)]


def _refuse_blank_paths(csv_path: str, paths: Sequence[str]) -> None:
    blank = [i + 2 for i, p in enumerate(paths) if not p.strip()]
    if blank:
        raise InputError(
            f"{csv_path}: empty image path on line(s) {blank[:MAX_EXAMPLES]}"
            f"{' ...' if len(blank) > MAX_EXAMPLES else ''}"
        )


def _refuse_duplicates(csv_path: str, base: str, paths: Sequence[str]) -> None:
    first: dict[str, int] = {}
    duplicates: list[str] = []
    for i, p in enumerate(paths):
        # One image, one key: 'a.jpg', './a.jpg', 'dir/../a.jpg' and a link to it are the same
        # file (os.path.realpath, ~12 us a row).
        key = image_key(os.path.join(base, p))
        if key in first:
            duplicates.append(f"line {i + 2} {p!r} is line {first[key] + 2} "
                              f"{paths[first[key]]!r}")
        else:
            first[key] = i
    if duplicates:
        raise InputError(
            f"{csv_path}: {len(duplicates)} row(s) name an image listed before, e.g. "
            f"{'; '.join(duplicates[:MAX_EXAMPLES])}; each image must appear once"
        )


def image_key(file: str) -> str:
    """What makes two listed files one image: the same real path."""
    return os.path.realpath(file)


def _refuse_rows_outside(csv_path: str, base: str, paths: Sequence[str]) -> None:
    root = boundary.real_root(base)
    outside = [f"line {i + 2}: {p!r}" for i, p in enumerate(paths)  # +2: header, 1-based
               if not boundary.is_inside(root, os.path.join(base, p))]
    if outside:
        raise InputError(boundary.outside_message(csv_path, "row(s)", f"its folder {base}",
                                                  outside))


def list_class_tree(root: str, *, allow_outside: bool = False) -> Listing:
    """`root/<class>/**/<image>`: one sub-folder per class, image files anywhere below it.

    Hidden entries and files without an image extension are skipped (a `.DS_Store` or a
    README is not a rejected image); files with an image extension that fail to decode are
    rejected later like any other bad image. Symlinked folders below a class folder are not
    walked into; a class folder or image that leads outside `root` is refused unless
    `allow_outside`, and a class folder that is a symlink to `root` or above is skipped with
    a warning (it would list the tree again inside itself). Names that are not UTF-8 are kept,
    escaped (pipeline.writing.boundary).
    """
    folders, warnings = _class_folders(root)
    classes = sort_class_names(folders)
    images, outside, escaped = [], [], []
    inside = boundary.real_root(root)
    for label, name in enumerate(classes):
        folder = os.path.join(root, folders[name])
        if not allow_outside and not boundary.is_inside(inside, folder):
            outside.append(f"{name}/ (a class folder)")
            continue
        for path in _image_files(folder):
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if not allow_outside and os.path.islink(path) and not boundary.is_inside(inside,
                                                                                      path):
                outside.append(boundary.escape_name(rel))
            images.append(SourceImage(boundary.escape_name(rel), path, label))
            if images[-1].path != rel:
                escaped.append(images[-1].path)
    if outside:
        raise InputError(boundary.outside_message(root, "entr(ies)", "the tree", outside))
    if not images:
        raise InputError(
            f"{root}: the class folders hold no image files "
            f"(extensions {sorted(IMAGE_EXTENSIONS)})"
        )
    images.sort(key=lambda image: image.path)
    warnings += _tree_warnings(classes, images, escaped)
    return Listing(
        tuple(images), classes, True,
        f"class folders {root} ({len(images):,} images, {len(classes)} classes)",
        warnings=tuple(warnings),
    )


def _class_folders(root: str) -> tuple[dict[str, str], list[str]]:
    """({class name: folder name}, warnings): the visible sub-folders of `root`, less those
    that are symlinks to `root` or above it; a class name is its folder's name, escaped."""
    folders, warnings = {}, []
    inside = boundary.real_root(root)
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        name = boundary.escape_name(entry.name)
        try:
            is_dir = entry.is_dir()
        except OSError as err:  # a symlink that loops (ELOOP), or one we may not follow
            warnings.append(f"class folder {name!r} cannot be opened ({err.strerror}): "
                            "skipped")
            continue
        if not is_dir or entry.name.startswith("."):
            continue
        if entry.is_symlink() and boundary.is_ancestor(entry.path, inside):
            warnings.append(f"class folder {name!r} is a symlink to "
                            f"{os.path.realpath(entry.path)}, the tree itself or a folder "
                            "above it: skipped")
            continue
        folders[name] = entry.name
    if not folders:
        raise InputError(
            f"{root}: no class folders; expected {root}/<class name>/<image files>, "
            "or give a CSV with --input"
        )
    return folders, warnings


def _tree_warnings(classes, images, escaped) -> list[str]:
    """What the summary should tell: classes without images, names that were escaped."""
    warnings = []
    counted = {image.label for image in images}
    empty = [name for label, name in enumerate(classes) if label not in counted]
    if empty:
        warnings.append(f"{len(empty)} class folder(s) with no image files, kept as classes "
                        f"with 0 images: {empty[:MAX_EXAMPLES]}")
    if escaped:
        shown = ", ".join(f"'{path}'" for path in escaped[:MAX_EXAMPLES])
        warnings.append(f"{len(escaped)} path(s) are not valid UTF-8 and are recorded with "
                        f"\\x escapes, e.g. {shown}; the files are read as they are")
    return warnings


def _image_files(directory: str):
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield os.path.join(dirpath, name)


def sort_class_names(names) -> tuple[str, ...]:
    """Sorted class names; numerically when every name is an integer ("2" before "10")."""
    names = list(names)
    try:
        return tuple(sorted(names, key=lambda n: (int(n), n)))
    except ValueError:
        return tuple(sorted(names))
