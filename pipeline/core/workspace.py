"""Where things live by default: one workspace folder (see WORKSPACE.md).

    workspace/raw/<name>/       source images and CSVs (the sample dataset is written here)
    workspace/shards/<name>/    TFRecord shards + dataset.json written by pipeline.write
    workspace/runs/<name>/      training runs: checkpoints, TensorBoard logs, metrics
    workspace/profiles/<name>/  profiler traces

`PIPELINE_WORKSPACE` moves the whole workspace (e.g. onto a fast local disk).
"""

from __future__ import annotations

import os

WORKSPACE_ENV = "PIPELINE_WORKSPACE"
DEFAULT_WORKSPACE = "workspace"


def root() -> str:
    return os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE


def raw_dir() -> str:
    return os.path.join(root(), "raw")


def shards_dir(name: str) -> str:
    return os.path.join(root(), "shards", name)

