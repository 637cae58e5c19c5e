"""The progress bar of a long write: a tqdm bar on a terminal, otherwise a log line every few
seconds. (`.progress/`, what an unfinished write keeps to resume from, is progress_dir's.)"""

from __future__ import annotations

import sys
import time

from absl import logging

# Without a terminal, progress is logged at most this often (seconds).
PROGRESS_LOG_EVERY_S = 10.0


class ProgressBar:
    """A tqdm bar on a terminal; otherwise a log line every PROGRESS_LOG_EVERY_S seconds."""

    def __init__(self, total: int, done: int, show_bar: bool | None):
        self.total, self.done, self.start_done = total, done, done
        self.start = time.monotonic()
        self.last_log = self.start
        if show_bar is None:
            show_bar = sys.stderr.isatty()
        self.bar = None
        if show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="img", dynamic_ncols=True,
                            desc="writing", smoothing=0.1)

    def update_to(self, done: int) -> None:
        done = min(done, self.total)
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if self.bar is None and now - self.last_log >= PROGRESS_LOG_EVERY_S:
            self.last_log = now
            rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            logging.info("%d/%d images (%.0f%%), %.0f img/s, ETA %.0f s", self.done, self.total,
                         100 * self.done / max(self.total, 1), rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
