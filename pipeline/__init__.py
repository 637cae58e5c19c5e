"""Raw-CHW TFRecord input pipeline for TensorFlow: convert images once, stream them fast.

The stages, in the order data flows through them:

    core/       the record format (schema, records), atomic files, workspace paths, and
                the integrity check of written shards
    writing/    image files or a TFDS split in -> sharded TFRecords + dataset.json out
    augment/    the reader's batched augmentation ops, and DevicePreprocess for the model
    dataset/    shards in -> tf.data batches of uint8 CHW images out (make_dataset)
    training/   batches in -> a trained Keras model, metrics and predictions out
    tools/      looking at what the stages made: inspect, profile, bench

A stage imports only stages above it in this list, never one below: core imports none;
writing imports core (and TensorFlow only to stage a TFDS split); augment imports none;
dataset imports core and augment, never writing; training imports dataset, augment and core;
tools may import any. Every stage may import `errors` (the one base error type and the exit
codes) and `cli` (what the commands share). Nothing imports the command modules; `startup`
(how TensorFlow's start-up lines stay off the console) is what each command calls first.

Importing this package, or any module of it, changes nothing in the process: no environment
variable, no import hook, no redirected file descriptor. TensorFlow's start-up lines are the
commands' business (startup.quiet_command), so a notebook that imports make_dataset sees
what TensorFlow says, a missing GPU included.

One thin module per command, each `flags -> one call into its stage`:

    python -m pipeline.write     pipeline.writing.writer.write_dataset
    python -m pipeline.verify    pipeline.core.integrity.verify_dataset
    python -m pipeline.inspect   pipeline.tools.inspection.inspect_dataset
    python -m pipeline.profile   pipeline.tools.profiling.profile_input
    python -m pipeline.predict   pipeline.training.predict.write_predictions
    python -m pipeline.oof       pipeline.training.oof.merge
    python -m pipeline.service   pipeline.dataset.service
    python -m pipeline.bench     pipeline.tools.bench.runner.run_bench
    python train.py              pipeline.training.train_and_evaluate (configured by gin)

Where a change goes: a writer setting is one WriteConfig field (writing/settings.py), and
becomes a flag and, if recorded, a dataset.json entry; an augmentation op is one registered
factory in augment/ (geometric.py, photometric.py, or a module of its own); a way of reading
is a module in dataset/ chosen by access.py; a network is a module in training/ beside
model.py; a user-facing error is a PipelineError subclass next to the code that raises it.
"""
