"""Keep freed sample memory in a reader process instead of handing it back to the kernel.

A process that decodes one sample after another (a data-loader worker) frees every sample's
arrays (two RGB images, two float32 depth maps: ~0.9 MiB per pair at 256 px) before it decodes
the next. With glibc's default settings much of that memory goes back to the kernel at each
free (arrays above the mmap threshold are unmapped; heap tops above the trim threshold are
trimmed), and the next sample's arrays fault fresh, zeroed pages back in. Fixing both thresholds
keeps the freed memory in the process for reuse: a worker then holds at most
``TRIM_THRESHOLD`` of free memory on top of what it uses.

The setting is process-wide, so the project applies it only where it owns the process (its
DataLoader workers, training.pair_loader); it is a no-op off glibc. This module imports only
the standard library.
"""

from __future__ import annotations

import ctypes
import os

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Allocations up to this size come from the heap (the most mallopt accepts on 64-bit glibc, and
# the cap of glibc's own adjustment) ...
MMAP_THRESHOLD = 32 << 20
# ... and up to this much free memory at the top of the heap stays mapped: above glibc's own
# largest trim threshold (2 x 32 MiB), so that a worker that frees a whole batch of augmented
# views (64 pairs of 224 px float32 crops are ~77 MB) keeps it for the next batch.
TRIM_THRESHOLD = 128 << 20


def is_glibc() -> bool:
    """Whether this process runs on GNU libc (the only C library whose mallopt is used here)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds for this process (see the module doc).

    True when both were set, False off glibc. Setting either disables glibc's own adjustment of
    the thresholds, hence both at once."""
    if not is_glibc():
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
