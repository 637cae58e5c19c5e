"""The writing stage: images in, sharded raw uint8 CHW TFRecords and dataset.json out.

    from pipeline.writing.settings import WriteConfig
    from pipeline.writing.writer import write_dataset
    write_dataset(WriteConfig(output_dir="workspace/shards/leaves", input="data/train.csv"))

    settings.py      WriteConfig: every setting of a write (and its flag) defined once
    writer.py        write_dataset: plan, write, verify; resuming an interrupted write
    write_plan.py    WritePlan and make_plan: the whole plan of a write, before a pixel is read
    inputs.py        --input / --test_input -> listings -> splits
    sources.py       listings of a CSV or a class-folder tree
    boundary.py      which files a listing may name (inside the input), file names as text
    tags.py          multi-label listings: a tag column or 0/1 class columns
    regression.py    regression listings: the numbers to predict (--target_columns)
    stratify.py      multi-label stratification of the val split and the folds
    tfds_source.py   a prepared TFDS split as input: the spec, finding it on disk
    tfds_staging.py  that split's images staged once as files, and their listing
    sample.py        the bundled sample (scikit-learn's digits in the Kaggle layout)
    plan.py          pure planning: splits, shard counts, record order, the fingerprint
    images.py        decode one image file to uint8 CHW (Pillow)
    shard_writer.py  what a worker process runs: decode and serialise one shard
    output_dir.py    whose the output directory is, what is complete, what may be removed
    progress_dir.py  `.progress/`: the plan's fingerprint, shard records, lock holders' notes
    lock.py          one writer per output directory (flock), the holder named to others
    tasks.py         several hosts writing one dataset (--num_tasks), then --finalize
    kept.py          reruns check what they keep (shards, indexes, dataset.json's fields)
    restore.py       reruns restore a deleted rejects.csv from the shards
    progress_bar.py  the progress bar or log line of a long write
    rejects.py       each split's reject limit, and rejects.csv listing every reject
    finish.py        check what was written, then rejects.csv, TFDS metadata, dataset.json
    tfds_export.py   the TFDS metadata beside the shards (tfds.builder_from_directory)

It imports the record format (pipeline.core), never the reader, the trainer or the tools,
and TensorFlow only while staging a TFDS split: its worker processes import only Pillow,
numpy and the format. The package itself imports nothing, so a worker importing
shard_writer loads just that.
"""
