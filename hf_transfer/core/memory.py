"""The process's memory: its resident set size and a command's peak, and the allocator setting that keeps the CPU
training peak near what a step holds."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
from pathlib import Path

# Where each memory figure comes from, written into the run record beside them.
MEMORY_SOURCES = {
    "rss_kib": "/proc/self/statm (resident pages now)",
    "peak_rss_kib": "max(VmHWM of /proc/self/status, reset when the command began (getrusage's ru_maxrss, the "
    "process's, where it cannot be), every rss_kib read since)",
}
_highest_rss_seen = 0

# `release_freed_memory`: glibc's mallopt(M_MMAP_THRESHOLD, 1 MiB). By default glibc raises its mmap threshold each
# time a large block is freed, so later activations come from the heap, whose freed pages stay resident and fragment
# as batch shapes change; a fixed threshold gives every block of 1 MiB or more its own mapping, handed back when freed.
_M_MMAP_THRESHOLD = -3
RELEASE_THRESHOLD_BYTES = 1 << 20
_allocator = "default"


def can_release_freed_memory() -> bool:
    """Whether this process runs on glibc, whose `mallopt` `release_freed_memory` needs."""
    return platform.libc_ver()[0] == "glibc"


def release_freed_memory() -> None:
    """Fix glibc's mmap threshold at RELEASE_THRESHOLD_BYTES for the rest of the process (see above); checked with
    `can_release_freed_memory` first."""
    global _allocator
    if not ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, RELEASE_THRESHOLD_BYTES):
        raise RuntimeError("glibc refused mallopt(M_MMAP_THRESHOLD).")
    _allocator = f"glibc, fixed mmap threshold {RELEASE_THRESHOLD_BYTES // 1024} KiB (release_freed_memory)"


_trimming = False


def trim_freed_memory(record: bool = True) -> None:
    """glibc's malloc_trim(0): hand the free pages anywhere in the heap back to the system (not only its top), so
    the holes that batches of changing shapes leave stop counting as resident; with `record`, the first call also
    marks the run record's allocator line. Checked with `can_release_freed_memory` first."""
    global _trimming
    ctypes.CDLL(None).malloc_trim(0)
    _trimming = _trimming or record


def release_device_memory() -> None:
    """What a finished run left: the objects only a full collection frees (Trainer and its callbacks refer to each
    other), and the blocks the CUDA caching allocator still holds, so the next run in this process starts clean."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def allocator_setting() -> str:
    """What the run record says about the allocator: `default`, or the fixed threshold set above, and whether the
    heap was trimmed after each optimizer step (`trim_memory_each_step`)."""
    return _allocator + (", malloc_trim after each optimizer step (trim_memory_each_step)" if _trimming else "")


_peak_was_reset = False


def start_command_accounts() -> None:
    """A command's memory peak and allocator line are its own, also when one process runs several (a notebook
    calling `main`): a run's peak had been the process's (a tiny model's run after MiniLM's reported MiniLM's), and
    one `trim_memory_each_step` run marked every later record. The kernel's peak (VmHWM) is reset where Linux lets
    a process reset its own; elsewhere the process's peak is what there is."""
    global _highest_rss_seen, _trimming, _peak_was_reset
    _highest_rss_seen, _trimming = 0, False
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _peak_was_reset = True
    except OSError:
        _peak_was_reset = False


def _kernel_peak_kib() -> int:
    if _peak_was_reset:
        try:
            status = Path("/proc/self/status").read_text()
            return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_kib() -> dict:
    """This process's resident set size now and its peak so far (since `start_command_accounts`), in KiB.

    The two come from different kernel counters (the RSS from /proc, the peak updated lazily), so a fresh RSS reading
    can exceed the recorded peak; the peak returned is never below any RSS read so far, which makes
    `peak_rss_kib >= rss_kib` hold by construction."""
    global _highest_rss_seen
    try:
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        rss = None
    if rss is not None:
        _highest_rss_seen = max(_highest_rss_seen, rss)
    return {"rss_kib": rss, "peak_rss_kib": max(_kernel_peak_kib(), _highest_rss_seen)}
