"""The record format and what every stage shares about files.

    schema.py      what a dataset is: feature keys, dtype, shape, shard names, the manifest
    manifest_json.py  dataset.json as text: formats 2 and 1, and what each must hold
    records.py     the same records as bytes: tf.train.Example encoding, TFRecord framing,
                   CRC32C with the CPU's instruction, where a record's image and label lie
    record_index.py  <shard>.offsets: every record's offset, its image's and label's and its
                   CRC, for random access; the chain of trust from dataset.json to each record
    record_fields.py  where a record's fields lie in its bytes (the tf.train.Example walk)
    index_scan.py  a record index built from its shard (old datasets, kept shards, verify)
    integrity.py   verify_dataset: every shard and record checked against the manifest
    index_check.py   verify's check of each record index against dataset.json and its shard
    streams.py     the hashing and inflating file readers integrity.py checks shards with
    files.py       atomic writes and temporary names a rerun can find
    locks.py       one process per directory: flock, and a note of who holds it
    workspace.py   where things live by default (PIPELINE_WORKSPACE)
    units.py       sizes in words (MiB, GiB: one binary family for every message)
    test_rows.py   the test CSV's rows without a record (--allow_missing_test), in dataset.json

schema.py, manifest_json.py, records.py and record_index.py are the only modules that know the
formats; the
writer, the reader and the tools import them. Nothing here imports TensorFlow at import time
(schema's TensorFlow helpers import it when called), and nothing imports another stage.
"""
