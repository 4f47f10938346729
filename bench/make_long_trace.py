#!/usr/bin/env python3
"""Writes a long synthetic kineto-style Chrome trace, gzipped, for trace-import memory and
speed figures (bench/README.md): the event mix of TraceBench.cpp's BM_ImportChromeTraceGz
(per profiler step a ProfilerStep# range, 2,000 cpu_op events, 1,000 forward and 1,000
backward, each followed by a [memory] event with a random address and the allocator's
totals, the blocks left live freed at the step's end), over as many steps as asked.
A step is ~1.17 MB of JSON: 1,000 steps make 1.17 GB, 92 MB gzipped. With --disorder each
pair of a step's memory events is written in reverse, so that the events come in a run of
two out of time order after another (a million runs in 1,000 steps), as the worst case of
an importer that must sort them.

    bench/make_long_trace.py STEPS OUT.json.gz [--seed N] [--disorder]

Standard library only; not a dependency of trainmem or its tests."""
import argparse
import gzip
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", type=int, help="profiler steps (>= 1)")
    ap.add_argument("out", help="the .json.gz to write")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--disorder", action="store_true",
                    help="write each pair of memory events in reverse order")
    a = ap.parse_args()
    if a.steps < 1:
        sys.exit("make_long_trace.py: STEPS must be at least 1")
    rng = random.Random(a.seed)
    total = 0
    ts = 1e15
    with gzip.open(a.out, "wt", compresslevel=6) as f:
        f.write('{"schemaVersion": 1, "traceEvents": [\n')
        for s in range(a.steps):
            out = []
            out.append('%s{"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#%d", '
                       '"pid": 1, "tid": 1, "ts": %.17g, "dur": 50000}\n'
                       % ("" if s == 0 else ",", s, ts))
            live = []
            held = None  # with --disorder: a memory event written after the next one
            for op in range(2000):
                at = ts + op * 20
                backward = op >= 1000
                tid = 2 if backward else 1
                out.append(',{"ph": "X", "cat": "cpu_op", "name": "aten::%s", "pid": 1, '
                           '"tid": %d, "ts": %.17g, "dur": 15, "args": {"External id": %d, '
                           '"Input Dims": [[8, 1024, 768], [768, 768]], "Input type": '
                           '["float", "float"]}}\n'
                           % ("mm_backward" if backward else "linear", tid, at, op))
                if not backward or not live or rng.getrandbits(1):
                    nbytes = 512 * (1 + rng.randrange(4096))
                    addr = 0x7f0000000000 + rng.randrange(1 << 32) * 512
                    live.append((addr, nbytes))
                else:
                    i = rng.randrange(len(live))
                    addr, nbytes = live[i]
                    nbytes = -nbytes
                    live[i] = live[-1]
                    live.pop()
                total += nbytes
                event = (',{"ph": "i", "cat": "cpu_instant_event", "s": "t", "name": '
                         '"[memory]", "pid": 1, "tid": %d, "ts": %.17g, "args": {"Device '
                         'Type": 1, "Device Id": 0, "Addr": %d, "Bytes": %d, "Total '
                         'Allocated": %d, "Total Reserved": %d}}\n'
                         % (tid, at + 5, addr, nbytes, total, total + (1 << 30)))
                if not a.disorder:
                    out.append(event)
                elif held is None:
                    held = event
                else:
                    out.append(event)
                    out.append(held)
                    held = None
            if held is not None:
                out.append(held)
            for addr, nbytes in live:
                total -= nbytes
                out.append(',{"ph": "i", "name": "[memory]", "pid": 1, "tid": 1, "ts": '
                           '%.17g, "args": {"Device Type": 1, "Device Id": 0, "Addr": %d, '
                           '"Bytes": %d, "Total Allocated": %d}}\n'
                           % (ts + 45000, addr, -nbytes, total))
            f.write("".join(out))
            ts += 50000
        f.write("]}\n")


if __name__ == "__main__":
    main()
