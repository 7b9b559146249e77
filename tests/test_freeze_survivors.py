"""The service's collect-and-freeze pass after batches: at most once per interval, at once after a reload."""

from __future__ import annotations

import gc

from consumer.service.state import freeze_survivors


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_pass_runs_at_most_once_per_interval_and_at_once_after_a_reload() -> None:
    try:
        assert freeze_survivors(thaw=True)  # a reload: always, and what was frozen before is thawed
        frozen = gc.get_freeze_count()
        assert not freeze_survivors(every=60.0)  # within the interval: nothing collected, nothing frozen
        Cycle()  # garbage made by a batch meanwhile
        assert gc.get_freeze_count() == frozen
        assert freeze_survivors(every=0.0)  # the next pass collects the cycle before it freezes
        assert not any(isinstance(o, Cycle) for o in gc.get_objects())
        kept = Cycle()
        assert freeze_survivors(every=0.0) and gc.get_freeze_count() > frozen
        assert kept.me is kept  # survivors are frozen, not collected
    finally:
        gc.unfreeze()
