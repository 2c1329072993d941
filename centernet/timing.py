"""Where an accuracy run's wall time goes: seconds per stage, a table and a run-record dict.

Stages are host wall time (time.perf_counter) spent in that stage, so they never overlap each
other and add up to at most the total; `other` is the rest (progress bar, batching, bookkeeping).
On a GPU, backends return as soon as the work is queued: `network` and `decode` are then the host
time spent launching them, and the device's compute shows up as `device_wait` (the host blocked
on a batch's results) or, where a launch blocks (a full launch queue, an upload waiting for its
buffer), inside `network`. No stage adds a device synchronisation.
"""

import time
from contextlib import contextmanager

from .report import format_table

STAGES = (
    ('annotations', 'annotation loading'),
    ('loader_wait', 'image decoding wait (loader)'),
    ('network', 'network (host time)'),
    ('decode', 'decode (host time)'),
    ('device_wait', 'waiting for device results'),
    ('server_wait', 'waiting for server answers'),  # inference.py --server
    ('results', 'results conversion'),
    ('save_json', 'writing --save_json'),
    ('evaluation', 'evaluation'),
)


class StageTimer:
    """Accumulates seconds per stage (STAGES) from its creation to stop()."""

    def __init__(self):
        self.seconds = {name: 0.0 for name, _ in STAGES}
        self.started = time.perf_counter()
        self.total = None

    def add(self, name, seconds):
        self.seconds[name] += seconds

    @contextmanager
    def stage(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def stop(self):
        self.total = time.perf_counter() - self.started
        return self

    def to_dict(self):
        """{stage: seconds, ..., 'other': ..., 'total': ...} for the run record."""
        total = self.total if self.total is not None else time.perf_counter() - self.started
        return dict(self.seconds, other=max(total - sum(self.seconds.values()), 0.0), total=total)

    def table(self, title='where the time went'):
        """Seconds and share of the total per stage; stages that never ran (0 s) are left out."""
        times = self.to_dict()
        total = times['total'] or 1.0
        labels = dict(STAGES, other='other (batching, progress, bookkeeping)', total='total wall')
        return format_table(['stage', 'seconds', '%'],
                            [[labels[name], f'{seconds:.2f}', f'{100 * seconds / total:.0f}']
                             for name, seconds in times.items() if seconds], title=title)
