"""The training stage: batches in, a trained Keras model, its metrics and predictions out.

    from pipeline.training import train_and_evaluate      # what train.py's gin configures

    loop.py         train_and_evaluate: check the run, build the input, build the model, fit,
                    finish
    finish.py       the end of a run: evaluate, save model.keras and the SavedModel (each
                    step announced and timed), metrics.json; a finished run's rerun
    interrupt.py    Ctrl-C: stop at the end of a step, saved, exit 130 (Interrupted)
    start.py        Run: the dataset (as the run's fold sees it), workdir, seed, precision,
                    devices and image sizes, checked before anything is built
    resolution.py   training at other sizes than the stored one, progressive resizing
    legs.py         a run as model.fit calls from its step: the rest of a partial epoch,
                    then whole ones, cut where the backbone unfreezes or the size changes;
                    where each one's input starts (a streamed split cannot be positioned)
    run_state.py    the state a run starts from (a new one, or its checkpoint's, checked
                    against the run's settings), put back into the model; the first writes
    checkpoints.py  the run's state (state.json + weights) saved atomically at steps and
                    epoch ends, the settings a checkpoint insists on
    settings.py     ModelSettings, OptimizerSettings (the learning-rate schedule), built from
                    train_and_evaluate's flat arguments (and why gin does not set them),
                    TrainingError
    model.py        ResNets whose first layer takes the records' uint8 CHW batches
    targets.py      what training and prediction do per kind of target (class, tags, value)
    tabular.py      --feature_columns: the image embedding joined with an MLP of the features
    backbones.py    keras.applications backbones on the same batches, their weights, a head,
                    the backbone's learning-rate factor (GradientScale)
    weights.py      a backbone's starting weights fetched or loaded before anything is built
                    (WeightsError: offline, or a file of another model, in one line)
    distribute.py   the tf.distribute strategy, its input pipelines, the checkpoint schedule
                    several workers allow, Keras multi-worker fixes
    callbacks.py    the callbacks in order: milestones, learning rate, timing, checkpoints,
                    TensorBoard and the input verdict there; progress bar or epoch lines
                    counted across the run's fits (RunProgress)
    timing.py       InputTimer (images/s, the share of time waiting for input, each step
                    marked for the profiler), the verdict on TensorBoard's thresholds
    advice.py       likely mistakes in a run's settings, warned about before training
    run_files.py    what a run leaves in its workdir; run.json
    workdir.py      one trainer per workdir (a lock held for the whole run)
    damage.py       a damaged record or shard named when training meets one
    predict.py      a trained run's predictions of a split as submission.csv rows (TTA,
                    ensembles, a fold's out-of-fold predictions)
    oof.py          where predictions go; a labeled split's truth and folds beside them;
                    the folds' out-of-fold files merged and scored (python -m pipeline.oof)
    prior.py        the training prior: the prediction of a test row whose image is missing

It imports the reader (pipeline.dataset), the augmentation ops and the record format, never
the writer or the tools. No gin: train.py wraps train_and_evaluate in its main only.
"""

from pipeline.training.loop import train_and_evaluate

__all__ = ["train_and_evaluate"]
