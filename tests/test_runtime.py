"""Process facts for the run record: the memory figures agree with each other whatever the kernel's counters do."""

import resource
from types import SimpleNamespace

from hf_transfer.core import runtime


def test_the_peak_is_never_below_an_rss_already_read(monkeypatch):
    # The kernel updates ru_maxrss lazily: simulate a high-water mark that lags behind the RSS just read.
    monkeypatch.setattr(runtime, "_highest_rss_seen", 0)
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=1))
    first = runtime.memory_kib()
    assert first["rss_kib"] > 1 and first["peak_rss_kib"] == first["rss_kib"]
    later = runtime.memory_kib()
    assert later["peak_rss_kib"] >= max(first["rss_kib"], later["rss_kib"])


def test_a_real_high_water_mark_wins_when_it_is_higher(monkeypatch):
    monkeypatch.setattr(runtime, "_highest_rss_seen", 0)
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=10**12))
    assert runtime.memory_kib()["peak_rss_kib"] == 10**12


def test_precision_name():
    assert runtime.precision_name(SimpleNamespace(bf16=True, fp16=False)) == "bf16"
    assert runtime.precision_name(SimpleNamespace(bf16=False, fp16=True)) == "fp16"
    assert runtime.precision_name(SimpleNamespace()) == "fp32"
