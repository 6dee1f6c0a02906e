#!/usr/bin/env python3
"""bench/slice.py PID MICROSECONDS: asks the scheduler for that time slice (sched_setattr's runtime, which
Linux 6.12+ EEVDF reads for SCHED_OTHER) for every thread of PID, keeping each thread's policy and nice value.

run.sh's side-by-side runs give the other server the slice c2sink's query threads ask for (src/sched.rs), so
that on the shared core neither preempts the other more readily: a thread with the shorter slice preempts the
other at once on each wake-up, and so (measured as a higher CPU cost per query) batches less than it would.
"""
import ctypes
import os
import platform
import struct
import sys

# struct sched_attr, first version: size, policy, flags, nice, priority, runtime, deadline, period
ATTR = "IIQiIQQQ"
NR = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: slice.py PID MICROSECONDS")
    pid, runtime = int(sys.argv[1]), int(sys.argv[2]) * 1000
    nr = NR.get(platform.machine())
    if nr is None:
        sys.exit(f"slice.py: no syscall numbers for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    size = struct.calcsize(ATTR)
    for tid in os.listdir(f"/proc/{pid}/task"):
        buf = ctypes.create_string_buffer(size)
        if libc.syscall(nr[1], int(tid), buf, size, 0) != 0:
            sys.exit(f"slice.py: sched_getattr {tid}: {os.strerror(ctypes.get_errno())}")
        _, policy, flags, nice, prio, _, deadline, period = struct.unpack(ATTR, buf.raw)
        attr = ctypes.create_string_buffer(struct.pack(ATTR, size, policy, flags, nice, prio, runtime, deadline, period), size)
        if libc.syscall(nr[0], int(tid), attr, 0) != 0:
            sys.exit(f"slice.py: sched_setattr {tid}: {os.strerror(ctypes.get_errno())}")


if __name__ == "__main__":
    main()
