"""The throughput meter and the stats snapshot's views (no Ray)."""

from raypw import ServiceStats
from raypw.stats import Throughput


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throughput_counts_events_in_the_window_only():
    clock = Clock()
    meter = Throughput(window=10.0, clock=clock)
    clock.now += 10
    meter.add(500)
    clock.now += 5
    meter.add(500)
    assert meter.rate() == 100.0  # 1,000 events in the last 10 s
    clock.now += 6  # the first 500 fall out of the window
    assert meter.rate() == 50.0
    clock.now += 20
    assert meter.rate() == 0.0


def test_a_young_meter_divides_by_its_age():
    clock = Clock()
    meter = Throughput(window=10.0, clock=clock)
    clock.now += 2
    meter.add(100)
    assert meter.rate() == 50.0


def test_stats_render_as_an_html_table():
    stats = ServiceStats(
        pending=1,
        done=2_000,
        failed=3,
        aborted=4,
        deduplicated=5,
        queued=6,
        running=7,
        processed=8,
        workers=2,
        workers_alive=2,
        throughput=1234.5,
    )
    page = stats._repr_html_()
    assert "<table>" in page and "2,000" in page and "1,234.5" in page
    assert "workers_alive" in page
