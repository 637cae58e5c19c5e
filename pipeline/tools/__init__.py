"""Tools that look at what the stages made: they may import any stage; nothing imports them.

    summary.py      the manifest in words (python -m pipeline.inspect prints it first)
    record_view.py  records as stored, and --record=N in words
    grid.py         --grid: a PNG of a split's first images, captioned
    inspection.py   inspect_dataset: the summary, a record and a grid, checked up front
    folds.py        a --folds dataset in words: each fold's size and balance, one fold's view
    profiling.py    a TensorBoard profile of the input pipeline (python -m pipeline.profile)
    bench/          python -m pipeline.bench: every way of reading the same photos, timed
"""
