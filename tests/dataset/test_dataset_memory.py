"""Reading memory: without a cache, make_dataset's peak RSS does not grow with dataset size,
read at random (the default) or streamed.

Two datasets of 224x224 records, 1 GB and 4 GB, each read for one whole training epoch in a
fresh process; the 4 GB one may use at most GROWTH_LIMIT_MB more peak memory. The 4 GB
dataset lists 32 shard files that are hard links to the 8 files of the 1 GB one: the reader
streams 4 GB through its buffers while the disk (and the page cache) holds 1 GB.

The reader's parallelism is threads of the reading process (random_access.in_threads): no
worker process and no shared memory, so this process's own peak is all the reading costs.
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from pipeline.core import records, schema

IMAGE_SHAPE = (3, 224, 224)
SHARD_RECORDS = 850  # x 150,528 bytes = 128 MB per shard
BASE_SHARDS = 8  # 1 GB
LINKS_PER_SHARD = 4  # 4 GB
GROWTH_LIMIT_MB = 300

# One epoch of training batches (shuffled, parsed, no augmentation), then this process's peak
# resident memory in MB (Linux reports ru_maxrss in KB).
READ_ONE_EPOCH = """
import resource, sys
from pipeline import dataset
batches = dataset.make_dataset(sys.argv[1], "train", batch_size=256, seed=0, augment=None,
                               access=sys.argv[2])
seen = sum(int(labels.shape[0]) for _, labels in batches)
print(seen, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _write_shard(path, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        writer = records.RecordWriter(f)
        for i in range(SHARD_RECORDS):
            writer.write(records.encode_example(image, i % 10, f"images/{seed}/{i}.jpg"))
        size, digest = writer.close()
    return size, digest


def _manifest(shards):
    split = schema.SplitInfo(
        count=sum(shard.count for shard in shards), shards=tuple(shards),
        class_counts={str(k): sum(shard.count for shard in shards) // 10 for k in range(10)},
    )
    # Format 1 (no index digests): the reader builds the shards' record indexes itself.
    return schema.Manifest(image_shape=IMAGE_SHAPE, classes=tuple(str(k) for k in range(10)),
                           splits={schema.TRAIN: split}, mean=(127.5,) * 3, std=(73.9,) * 3,
                           format_version=1)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(1 GB dataset dir, 4 GB dataset dir)."""
    root = tmp_path_factory.mktemp("memory")
    small, large = root / "1gb", root / "4gb"
    small.mkdir()
    large.mkdir()
    small_shards, large_shards = [], []
    for index in range(BASE_SHARDS):
        name = schema.shard_filename(schema.TRAIN, index, BASE_SHARDS)
        size, digest = _write_shard(small / name, seed=index)
        small_shards.append(schema.ShardInfo(name, SHARD_RECORDS, size, digest))
        for link in range(LINKS_PER_SHARD):
            large_index = index * LINKS_PER_SHARD + link
            large_name = schema.shard_filename(schema.TRAIN, large_index,
                                               BASE_SHARDS * LINKS_PER_SHARD)
            os.link(small / name, large / large_name)
            large_shards.append(schema.ShardInfo(large_name, SHARD_RECORDS, size, digest))
    for folder, shards in ((small, small_shards), (large, large_shards)):
        (folder / schema.MANIFEST_NAME).write_text(_manifest(shards).to_json())
    return small, large


def _peak_rss_mb(data_dir, access):
    result = subprocess.run(
        [sys.executable, "-c", READ_ONE_EPOCH, str(data_dir), access], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen, peak = result.stdout.split()
    return int(seen), float(peak)


@pytest.mark.parametrize("access", ["random", "stream"])
@pytest.mark.slow
def test_peak_memory_does_not_grow_with_dataset_size(datasets, access):
    small, large = datasets
    small_seen, small_peak = _peak_rss_mb(small, access)
    large_seen, large_peak = _peak_rss_mb(large, access)
    # Every full batch of each epoch was read: 4x the bytes went through the pipeline.
    assert small_seen == BASE_SHARDS * SHARD_RECORDS // 256 * 256
    assert large_seen == LINKS_PER_SHARD * BASE_SHARDS * SHARD_RECORDS // 256 * 256
    assert large_peak - small_peak < GROWTH_LIMIT_MB, (access, small_peak, large_peak)


def test_the_large_dataset_is_four_times_the_bytes_on_one_copy_of_disk(datasets):
    small, large = datasets
    small_manifest = json.loads((small / schema.MANIFEST_NAME).read_text())
    large_manifest = json.loads((large / schema.MANIFEST_NAME).read_text())
    small_bytes = sum(s["bytes"] for s in small_manifest["splits"]["train"]["shards"])
    large_bytes = sum(s["bytes"] for s in large_manifest["splits"]["train"]["shards"])
    assert small_bytes > 1e9 and large_bytes == LINKS_PER_SHARD * small_bytes
    first = large_manifest["splits"]["train"]["shards"][0]
    with open(large / first["file"], "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == first["sha256"]
