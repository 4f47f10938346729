#!/usr/bin/env python3
"""Writes the small traces tests/analyzer/TraceImportTest.cpp reads, and prints the figures
the test asserts (worked out here by hand from the events, independently of trainmem).

    python3 tests/data/traces/make_traces.py      # from the repository root

Plain Python 3 (json, gzip, sqlite3): no torch. The formats follow what PyTorch and Nsight
Systems write: kineto Chrome traces with [memory] events, torch.profiler's
export_memory_timeline_raw rows, nsys's CUDA_GPU_MEMORY_USAGE_EVENTS table.
"""
import gzip, json, os, sqlite3

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20


def kineto():
    # One profiler step on two threads (main: forward + optimizer; autograd: backward),
    # CUDA device 0 with Addr / Total Allocated / Total Reserved, plus CPU events. Memory
    # events are written out of time order, as kineto does.
    ops = [
        ("ProfilerStep#1", 0, 1000, 1, "user_annotation"),
        ("aten::linear", 10, 90, 1, "cpu_op"),
        ("aten::mm", 20, 30, 1, "cpu_op"),
        ("aten::relu", 60, 20, 1, "cpu_op"),
        ("autograd::engine::evaluate_function: MmBackward0", 200, 200, 2, "cpu_op"),
        ("aten::mm", 210, 50, 2, "cpu_op"),
        ("Optimizer.step#Adam.step", 500, 200, 1, "user_annotation"),
        ("aten::_foreach_add", 510, 50, 1, "cpu_op"),
        ("Optimizer.zero_grad#Adam.zero_grad", 800, 50, 1, "user_annotation"),
    ]
    # (ts, tid, addr, bytes) on cuda:0; the base of 100 MiB was allocated before profiling
    base = 100 * MiB
    mem = [
        (25, 1, 0xA000, 8 * MiB),    # mm output (forward)
        (65, 1, 0xB000, 4 * MiB),    # relu output
        (220, 2, 0xC000, 16 * MiB),  # grad in backward: the peak 128 MiB
        (240, 2, 0xA000, -8 * MiB),  # forward output freed in backward
        (300, 2, 0xC000, -16 * MiB),
        (520, 1, 0xD000, 2 * MiB),   # optimizer scratch
        (530, 1, 0xD000, -2 * MiB),
        (820, 1, 0xB000, -4 * MiB),
    ]
    total = base
    events = []
    timeline = []
    for ts, tid, addr, b in mem:
        total += b
        timeline.append((ts, total))
        events.append({"ph": "i", "cat": "cpu_instant_event", "s": "t", "name": "[memory]",
                       "pid": 7, "tid": tid, "ts": ts,
                       "args": {"Device Type": 1, "Device Id": 0, "Addr": addr, "Bytes": b,
                                "Total Allocated": total, "Total Reserved": 160 * MiB}})
    events.append({"ph": "i", "cat": "cpu_instant_event", "s": "t", "name": "[memory]",
                   "pid": 7, "tid": 1, "ts": 15,
                   "args": {"Device Type": 0, "Device Id": -1, "Addr": 0x10, "Bytes": 4096,
                            "Total Allocated": 4096, "Total Reserved": 0}})
    events.reverse()  # out of time order
    for name, ts, dur, tid, cat in ops:
        events.append({"ph": "X", "cat": cat, "name": name, "pid": 7, "tid": tid, "ts": ts,
                       "dur": dur, "args": {"External id": 1}})
    doc = {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "test"}],
           "traceEvents": events, "traceName": "kineto_small", "displayTimeUnit": "ms"}
    with open(os.path.join(HERE, "kineto_small.json"), "w") as f:
        json.dump(doc, f, indent=1)
    with gzip.open(os.path.join(HERE, "kineto_small.json.gz"), "wt") as f:
        json.dump(doc, f)
    peak = max(t for _, t in timeline)
    print("kineto_small: cuda:0 peak", peak, "(base 100 MiB + 8 + 4 + 16 MiB), reserved",
          160 * MiB, "fragmentation", 160 * MiB - peak)
    print("  phases: forward", base + 12 * MiB, "backward", peak, "optimizer",
          base + 6 * MiB, "zero_grad", base + 4 * MiB)
    print("  live at the peak: 16 MiB (aten::mm, tid 2), 8 MiB (aten::mm), 4 MiB (aten::relu)")


def timeline():
    # export_memory_timeline_raw rows: [time_ns, action, bytes, category]
    # categories: 0 parameter, 1 optimizer_state, 2 input, 3 temporary, 4 activation,
    # 5 gradient, 6 autograd_detail, 7 unknown
    rows = [
        [0, 1, 40 * MiB, 0],        # preexisting parameters
        [0, 1, 80 * MiB, 1],        # preexisting optimizer state
        [1000, 2, 1 * MiB, 2],      # input
        [2000, 2, 30 * MiB, 4],     # activation
        [3000, 2, 5 * MiB, 3],      # temporary
        [4000, 4, -5 * MiB, 3],
        [5000, 2, 40 * MiB, 5],     # gradients: peak 40+80+1+30+40 = 191 MiB
        [6000, 3, -30 * MiB, 4],    # version bump: activation -> autograd_detail
        [6000, 3, 30 * MiB, 6],
        [7000, 4, -30 * MiB, 6],
        [8000, 4, -40 * MiB, 5],
    ]
    with open(os.path.join(HERE, "timeline.raw.json"), "w") as f:
        json.dump(rows, f)
    with gzip.open(os.path.join(HERE, "timeline.raw.json.gz"), "wt") as f:
        json.dump(rows, f)
    print("timeline.raw.json: peak", 191 * MiB, "weights", 40 * MiB, "optimizer_states",
          80 * MiB, "activations", 30 * MiB, "gradients", 40 * MiB, "inputs", MiB)


def nsys():
    path = os.path.join(HERE, "nsys_memory.sqlite")
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE CUDA_GPU_MEMORY_USAGE_EVENTS (start INT NOT NULL, globalPid INT, "
               "deviceId INT NOT NULL, contextId INT, address INT NOT NULL, pc INT, "
               "bytes INT NOT NULL, memKind INT, memoryOperationType INT NOT NULL, "
               "name INT, correlationId INT, streamId INT)")
    rows = [  # start ns, device, address, bytes, kind, op
        (1000, 0, 0x1000, 20 * MiB, 2, 0),
        (2000, 0, 0x2000, 2 * MiB, 2, 0),
        (2500, 0, 0x9000, 64 * MiB, 1, 0),   # pinned host: ignored
        (3000, 1, 0x1000, 2 * MiB, 2, 0),
        (4000, 0, 0x3000, 40 * MiB, 2, 0),   # cuda:0 peak 62 MiB
        (5000, 0, 0x3000, 40 * MiB, 2, 1),
        (6000, 0, 0x4000, 10 * MiB, 2, 0),
        (7000, 0, 0x1000, 20 * MiB, 2, 1),
    ]
    for r in rows:
        db.execute("INSERT INTO CUDA_GPU_MEMORY_USAGE_EVENTS (start, globalPid, deviceId, "
                   "contextId, address, pc, bytes, memKind, memoryOperationType, name, "
                   "correlationId, streamId) VALUES (?, 1, ?, 1, ?, 0, ?, ?, ?, 0, 0, 0)",
                   (r[0], r[1], r[2], r[3], r[4], r[5]))
    db.commit()
    db.execute("VACUUM")
    db.close()
    path = os.path.join(HERE, "nsys_no_memory.sqlite")
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    db.commit()
    db.close()
    print("nsys_memory.sqlite: cuda:0 peak", 62 * MiB, "3 live at the peak; cuda:1 peak",
          2 * MiB)


if __name__ == "__main__":
    kineto()
    timeline()
    nsys()
