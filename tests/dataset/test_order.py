"""order.py: the permutations are bijections; every epoch holds every record at most once and
all but the remainder exactly once; batch g is a pure function of (seed, g), found in O(1);
windows keep each batch within a few shards."""

import numpy as np
import pytest

from pipeline.dataset.order import Order, batches_per_epoch, permute, require_batches
from pipeline.dataset.options import DatasetError


@pytest.mark.parametrize("size", [1, 2, 3, 5, 16, 17, 255, 256, 1000, 4097])
def test_permute_is_a_bijection_for_every_size(size):
    for key in [(0,), (1, 2), (7, 0, -1)]:
        image = permute(np.arange(size), size, key)
        assert sorted(image.tolist()) == list(range(size))
    if size > 16:  # and it moves most records
        assert np.mean(permute(np.arange(size), size, (0,)) != np.arange(size)) > 0.8


def test_permute_depends_on_the_key_and_nothing_else():
    a = permute(np.arange(1000), 1000, (3, 0))
    np.testing.assert_array_equal(a, permute(np.arange(1000), 1000, (3, 0)))
    assert not np.array_equal(a, permute(np.arange(1000), 1000, (3, 1)))
    assert not np.array_equal(a, permute(np.arange(1000), 1000, (4, 0)))
    # One position alone maps as it does among all of them.
    assert permute(np.array([417]), 1000, (3, 0))[0] == a[417]


def _epoch(order, epoch):
    per = order.batches_per_epoch
    return [order.indices(g) for g in range(epoch * per, (epoch + 1) * per)]


@pytest.mark.parametrize("make", [
    lambda counts: Order.global_shuffle(counts, 7, seed=1),
    lambda counts: Order.windows(counts, 7, seed=1, window_shards=3),
])
def test_every_epoch_holds_each_record_at_most_once_and_all_but_the_remainder(make):
    order = make((10, 9, 11, 10, 8, 12, 10, 3))  # 73 records: 10 batches of 7, 3 dropped
    assert order.batches_per_epoch == 10
    epochs = []
    for epoch in range(3):
        batches = _epoch(order, epoch)
        assert all(len(b) == 7 for b in batches)
        flat = np.concatenate(batches)
        assert len(set(flat.tolist())) == 70 and flat.min() >= 0 and flat.max() < 73
        epochs.append(flat)
    assert not np.array_equal(epochs[0], epochs[1])  # a new order every epoch
    assert len({tuple(sorted(set(range(73)) - set(e.tolist()))) for e in epochs}) > 1


def test_a_global_batch_draws_from_most_shards():
    counts = (20,) * 16
    order = Order.global_shuffle(counts, 16, seed=0)
    shard_of = np.repeat(np.arange(16), 20)
    distinct = [len(set(shard_of[order.indices(g)])) for g in range(order.batches_per_epoch)]
    # 16 draws from 16 equal shards reach ~10.4 of them on average.
    assert np.mean(distinct) > 8


def test_windows_keep_each_batch_within_two_windows_of_shards():
    counts = (20,) * 16
    order = Order.windows(counts, 16, seed=0, window_shards=4)
    shard_of = np.repeat(np.arange(16), 20)
    for g in range(3 * order.batches_per_epoch):
        assert len(set(shard_of[order.indices(g)])) <= 8
    # Windows hold different shards in different epochs.
    first = [set(shard_of[order.indices(g)]) for g in (0, order.batches_per_epoch)]
    assert first[0] != first[1]


def test_batch_g_is_found_without_the_batches_before_it():
    order = Order.global_shuffle((1000,) * 50, 256, seed=9)
    far = 10**12
    epoch, position = divmod(far, order.batches_per_epoch)
    expected = permute(np.arange(position * 256, (position + 1) * 256), 50_000, (9, epoch))
    np.testing.assert_array_equal(order.indices(far), expected)


def test_sequential_is_the_records_in_order_with_the_last_batch_partial():
    order = Order.sequential((4, 3), 3)
    assert [order.indices(g).tolist() for g in range(order.batches_per_epoch)] == [
        [0, 1, 2], [3, 4, 5], [6]]


def test_too_few_records_for_a_batch_is_a_clear_error():
    assert batches_per_epoch(10, 4, training=True) == 2
    assert batches_per_epoch(10, 4, training=False) == 3
    with pytest.raises(DatasetError, match="use batch_size<=3"):
        require_batches(3, 4, True, "train")
    with pytest.raises(DatasetError, match="batch_size=0 must be at least 1"):
        require_batches(3, 0, True, "train")
