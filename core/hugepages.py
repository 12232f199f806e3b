"""Transparent huge pages for torch's CPU tensors: requested before torch's first allocation, checked where
latencies are measured.

Measured (2-vCPU AMD EPYC VM, torch 2.14.1, 2026-12-02): a ResNet block of 1664 -> 1280 channels at 8x8
(77 MB of weights) ran in 154-165 ms with its weights on 4 KiB pages and in 79-83 ms on 2 MiB transparent huge
pages (six fresh instances each); on 4 KiB pages the same block had also been timed at 81.5 ms minutes
earlier, and blocks timed inside a whole forward came out at half or all of their isolated time from one
profile to the next: which weights happened to be backed by huge pages (address translation of a VM's
memory) decided it, not the block. Large-weight blocks (1280 channels at 8x8 and below) are most of a
UNet's CPU time, so every latency table, calibration and validation on such a machine carried that lottery.

torch's CPU allocator advises the kernel to back allocations of 2 MiB and more with huge pages
(madvise(MADV_HUGEPAGE)) when the environment variable THP_MEM_ALLOC_ENABLE=1 is set. It reads the variable
once, at the process's first CPU allocation, so the project's packages request it when they are imported
(before they import torch); a process that allocated tensors before that keeps 4 KiB pages, and `torch_cpu_pages` says
so (measured CPU tables record it in their fingerprint). Setting THP_MEM_ALLOC_ENABLE=0 opts out. On the
kernel's side THP must be `always` or `madvise` (/sys/kernel/mm/transparent_hugepage/enabled).

Imports nothing but the standard library at module level (torch only inside `torch_cpu_pages`).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "THP_MEM_ALLOC_ENABLE"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGE = 2 << 20  # the x86-64/arm64 transparent huge page, and torch's threshold for advising it


def request() -> None:
    """Ask torch to put large CPU tensors on huge pages (no effect once this process has allocated one)."""
    os.environ.setdefault(ENV, "1")


def kernel_mode() -> str:
    """The kernel's THP mode (`always`, `madvise`, `never`), or `unavailable` (not Linux, no THP)."""
    try:
        text = THP_SETTING.read_text()
    except OSError:
        return "unavailable"
    chosen = [word[1:-1] for word in text.split() if word.startswith("[")]
    return chosen[0] if chosen else "unavailable"


def torch_cpu_pages() -> str:
    """How this process's large torch CPU tensors are paged: `2 MiB` when the kernel may back them with
    transparent huge pages (their mapping is THP-eligible), else `4 KiB (reason)`."""
    import torch

    mode = kernel_mode()
    if mode in ("never", "unavailable"):
        return f"4 KiB (kernel THP {mode})"
    probe = torch.ones(HUGE_PAGE // 4 * 2)  # 4 MiB: torch advises huge pages from 2 MiB up
    eligible = _thp_eligible(probe.data_ptr())
    if eligible is None:
        return "4 KiB (no /proc/self/smaps to check)"
    if eligible:
        return "2 MiB"
    why = "=0" if os.environ.get(ENV) == "0" else " not set before torch's first allocation"
    return f"4 KiB ({ENV}{why})"


def _thp_eligible(address: int) -> bool | None:
    """Whether the mapping holding `address` may get transparent huge pages (/proc/self/smaps: `THPeligible`,
    or on older kernels the `hg` (MADV_HUGEPAGE) flag); None when the file or the mapping is not found."""
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        head = line.split(maxsplit=1)[0] if line else ""
        if "-" in head and not head.endswith(":"):  # a mapping's header: start-end perms offset ...
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == "THPeligible:":
            return line.split()[1] == "1"
        elif inside and head == "VmFlags:":
            return "hg" in line.split()[1:]
    return None
