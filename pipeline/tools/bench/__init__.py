r"""The benchmark (`python -m pipeline.bench`): every way of reading the same photos, timed.

    photos.py   the inputs, made offline once: photo crops, the same as shards and as JPEGs
    measure.py  Bench (the settings), Row, Monitor (peak memory, other processes' CPU)
    rows.py     the rows, a registry of `(Bench, name) -> Row` functions, run round-robin
    cold.py     the cold-cache rows (the page cache emptied first) and the disk's own rate
    scaling.py  the ImageNet crop (ours against the JPEG recipe) and the one-core rows
    report.py   the table, the targets and the JSON
    runner.py   run_bench: one whole run, what the command does with its flags

The rows, each a function `(Bench, name) -> Row` in the ROWS registry:

  read_random_augment        1. make_dataset, training, random access (the default read:
                                what train.py runs), the default augmentation in the pipeline
  read_random_aug_on_device  2. the same with augment=None: augmentation left to the model's
                                DevicePreprocess on the accelerator (not timed here)
  read_stream_augment,          rows 1 and 2 streamed from the shards (access="stream"): what
  read_stream_aug_on_device     compressed or remote shards, or a tf.data service, get
  read_cached                3. cache="memory", steady state (epoch 2+), augmentation on device
  read_cached_augment           the same with the default augmentation in the pipeline
  jpeg_tfdata                4. tf.data over the JPEG files: read, decode, random flip, batch,
                                AUTOTUNE; what a user would pick instead of our shards
  jpeg_pillow_loop           5. a Python loop over the JPEG files with Pillow, one image at a
                                time: the method users start with
  tfds_benchmark_ours            tfds.benchmark (TensorFlow Datasets' own timer) over row 1's
                                pipeline: the same reader, measured by a tool users trust
  tfds_benchmark_tfds_reader     tfds.benchmark over TFDS's own reader of the same shards
                                (tfds.builder_from_directory, as_dataset, batched)
  memcpy                     6. one numpy copy of each batch's bytes: the bound for any reader
  disk_sequential_read       7. the training shards read front to back from the disk (evicted
                                from the page cache first): the disk's rate, MiB/s
  read_random_cold,             rows 2 and its streamed twin with every epoch read from the
  read_stream_cold              disk (evicted first): what a split larger than RAM gets
  train_resnet                  a ResNet trained on the reader (on a GPU ResNet-50, mixed
                                precision, batch 256; on a CPU a ResNet-10): img/s, and the
                                share of step time spent waiting for input, with a verdict
  jpeg_tfdata_rrc               the ImageNet crop over the JPEGs: tensorflow/models' recipe
                                (sample_distorted_bounding_box, decode_and_crop_jpeg, resize,
                                flip) to 7/8 of the stored side (scaling.py)
  read_random_rrc               the same crop from our shards: random_resized_crop + flip_lr,
                                done by the random-access reader (OpenCV)
  jpeg_tfdata_1core,            rows 4, 1 and 2 run by a child bench pinned to one core: with
  read_random_augment_1core,    the rows themselves (all cores), what more cores gain each
  read_random_aug_on_device_1core
  write_1_worker, write_2_workers: the writer, with one and with two worker processes (these
  run first, before TensorFlow is imported)

Reader rows time whole batches of READ_BATCH images after the first (pipeline start-up, XLA
compilation and the in-memory table's load are not steady state), for at least
READ_MIN_IMAGES images, and print their speed relative to jpeg_tfdata.

Each row times one stage with `time.perf_counter`, samples the peak memory of this process and
its workers (reader rows share this process, so theirs includes TensorFlow and what earlier
rows left in its heap; the reader's own streaming bound is a test), and measures how busy
other processes kept the machine meanwhile (a shared 2-core machine is often not quiet; the
table then says so). Rows run one at a time (two at once would measure their contention),
--repeats times round-robin (the writers' runs all before the readers'); each row reports
its fastest run. Performance targets are printed here, never asserted in tests.

The bench may import every stage; nothing imports it.
"""

