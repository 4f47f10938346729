#!/usr/bin/env python3
"""Regenerates the pickle and CUDA-snapshot test inputs of tests/analyzer/PickleTest.cpp
and tests/analyzer/CudaSnapshotTest.cpp. Plain python3 (pickle, json, gzip); no torch.

    python3 tests/data/traces/make_snapshots.py        # writes next to this script

Files:
  pickle_values_p{0,2,4,5}.pickle     one value per protocol, covering the data opcodes
  pickle_values_p{0,2,4,5}.expected   its canonical form (canon() below), one line
  pickle_evil_os_system_p{0,2,4,5}.pickle   pickle.dumps(Evil()), __reduce__ = os.system
  cuda_snapshot_two_devices.pickle    a torch.cuda.memory._dump_snapshot()-shaped dict
  cuda_snapshot_two_devices.json      the same dict as JSON (the pool-id tuple a list)
  cuda_snapshot_two_devices.pickle.gz the pickle, gzipped
  cuda_snapshot_memo_bomb.pickle      2000 references to one segment of 2000 references
                                      to one block: 4 million blocks from a few KB

The snapshot follows the layout of torch/csrc/cuda/Module.cpp (_cuda_memorySnapshot):
frames run innermost first and shared frame lists are one object (so the pickle memo
refers to them). The script replays it independently of trainmem and prints the figures
CudaSnapshotTest.cpp hard-codes; it also asserts them against the hand-worked numbers
written beside the trace below.
"""

import gzip
import json
import os
import pickle
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------
# Pickle values

def canon(v):
    """A spelling PickleTest.cpp reproduces from the unpickled tree: types tagged, floats
    as their IEEE bits, text as UTF-8 hex, sets as lists in iteration order."""
    if v is None:
        return "None"
    if v is True or v is False:
        return str(v)
    if isinstance(v, int):
        return "i:%d" % v
    if isinstance(v, float):
        return "f:" + struct.pack(">d", v).hex()
    if isinstance(v, str):
        return "s:" + v.encode("utf-8").hex()
    if isinstance(v, (bytes, bytearray)):
        return "b:" + bytes(v).hex()
    if isinstance(v, (list, set, frozenset)):
        return "[" + ",".join(canon(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ",".join(canon(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ",".join(canon(k) + ":" + canon(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


def pickle_value(protocol):
    shared = ["shared-list", 7]
    names = ["k%d" % i for i in range(300)]  # > 256 memo entries: LONG_BINPUT/GET
    v = {
        "none": None,
        "true": True,
        "false": False,
        "ints": [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31 - 1, 2**31, -2**31 - 1,
                 2**63 - 1, -2**63, 12345678901234],
        "floats": [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, float("inf"), float("-inf")],
        "str": ["", "plain", "h\u00e9llo", "snow \u2603", "emoji \U0001F600",
                "back\\slash", "new\nline", "nul\x00", "cr\r", "sub\x1a", "x" * 300],
        "tuples": [(), (1,), (1, "a"), (1, 2, 3), (1, 2, 3, 4)],
        "nested": {"a": [1, [2, [3, {"deep": (4,)}]]]},
        "shared": [shared, shared],
        "memo": names + names,
        "long_list": list(range(1100)),           # APPENDS in batches of 1000
        "int_keys": {i: -i for i in range(1001)},  # SETITEMS in batches of 1000
    }
    if protocol >= 3:
        v["bytes"] = [b"", b"\x00\x01\xfe\xff", b"y" * 300]
    if protocol >= 4:
        v["sets"] = [set(), {7}, frozenset(), frozenset({8, 9})]
    if protocol >= 5:
        v["bytearray"] = bytearray(b"ab\x00")
    return v


class Evil:
    def __reduce__(self):
        return (os.system, ("echo",))


# ---------------------------------------------------------------------------------------
# The snapshot

def frame(name, filename, line):
    return {"filename": filename, "line": line, "name": name}


GATHER = frame("CapturedTraceback::gather", "torch/csrc/profiler/combined_traceback.cpp", 18)
F_EMBED = [frame("embed", "model.py", 3), frame("main", "train.py", 1)]
F_LINEAR = [frame("linear", "model.py", 10), frame("main", "train.py", 1)]
F_ATTN = [GATHER, frame("attention", "model.py", 20), frame("main", "train.py", 1)]
F_OPT = [frame("optimizer_step", "train.py", 50)]
F_OLD = [frame("clear_cache", "train.py", 77)]
F_COMM = [frame("all_reduce", "comm.py", 5)]
F_LOAD = [frame("load", "data.py", 7)]
F_TMP = [frame("tmp", "data.py", 12)]
F_SCRATCH = [GATHER, frame("scratch", "train.py", 99)]
NO_FRAMES = []

SEG_A = 0x7F0000000000  # 20 MiB, large pool
SEG_B = 0x7F0001600000  # 2 MiB, small pool
SEG_C = 0x7F0004000000  # 32 MiB, allocated and freed inside the trace
OLD = 0x7F0006000000    # a 6 MiB segment and allocation older than the trace
SEG_D = 0x7F1000000000  # device 1: 2 MiB, small pool
T0 = 1_700_000_000_000_000  # time_us: microseconds since the epoch, as torch records


def block(addr, size, requested, state, frames):
    return {"address": addr, "size": size, "requested_size": requested, "state": state,
            "frames": frames}


def segment(device, addr, seg_type, blocks):
    total = sum(b["size"] for b in blocks)
    allocated = sum(b["size"] for b in blocks if b["state"] == "active_allocated")
    active = sum(b["size"] for b in blocks if b["state"] != "inactive")
    requested = sum(b["requested_size"] for b in blocks if b["state"] != "inactive")
    return {"device": device, "address": addr, "total_size": total,
            "allocated_size": allocated, "active_size": active, "requested_size": requested,
            "stream": 0, "segment_type": seg_type, "segment_pool_id": (0, 0),
            "is_expandable": False, "frames": NO_FRAMES, "blocks": blocks}


def entry(action, addr, size, frames=None, time_index=None, device_free=None):
    e = {"action": action}
    if action == "oom":
        e["device_free"] = device_free
    else:
        e["addr"] = addr
    e["size"] = size
    e["stream"] = 0
    if time_index is not None:
        e["time_us"] = T0 + 10 * time_index
    if frames is not None:
        e["frames"] = frames
    return e


def snapshot():
    segments = [
        segment(0, SEG_A, "large", [
            block(SEG_A, 8 * MiB, 8000000, "active_allocated", F_EMBED),
            block(SEG_A + 8 * MiB, 4 * MiB, 4 * MiB, "active_allocated", F_OPT),
            block(SEG_A + 12 * MiB, 8 * MiB, 8 * MiB, "inactive", NO_FRAMES),
        ]),
        segment(0, SEG_B, "small", [
            block(SEG_B, 512, 400, "active_allocated", NO_FRAMES),
            block(SEG_B + 512, 512, 512, "active_pending_free", F_COMM),
            block(SEG_B + 1024, 2 * MiB - 1024, 2 * MiB - 1024, "inactive", NO_FRAMES),
        ]),
        segment(1, SEG_D, "small", [
            block(SEG_D, 1024, 1000, "active_allocated", F_LOAD),
            block(SEG_D + 1024, 2 * MiB - 1024, 2 * MiB - 1024, "inactive", NO_FRAMES),
        ]),
    ]
    # Device 0, with time_us. Allocated (requested bytes) / reserved after each entry:
    # start 14292368 / 28 MiB (embed 8000000 + 400 + comm 512 + old 6291456; A, B, OLD)
    dev0 = [
        entry("segment_alloc", SEG_C, 32 * MiB, NO_FRAMES, 0),        # 14292368 / 60 MiB
        entry("alloc", SEG_C, 16 * MiB, F_LINEAR, 1),                 # 31069584
        entry("alloc", SEG_C + 16 * MiB, 10 * MiB, F_ATTN, 2),        # 41555344  peak
        entry("free_requested", SEG_C, 16 * MiB, F_LINEAR, 3),        # 24778128
        entry("free_completed", SEG_C, 16 * MiB, F_LINEAR, 4),
        entry("free_requested", OLD, 6 * MiB, F_OLD, 5),              # 18486672
        entry("free_completed", OLD, 6 * MiB, F_OLD, 6),
        entry("segment_free", OLD, 6 * MiB, NO_FRAMES, 7),            #          / 54 MiB
        entry("free_requested", SEG_C + 16 * MiB, 10 * MiB, F_ATTN, 8),  # 8000912
        entry("free_completed", SEG_C + 16 * MiB, 10 * MiB, F_ATTN, 9),
        entry("segment_free", SEG_C, 32 * MiB, NO_FRAMES, 10),        #          / 22 MiB
        entry("alloc", SEG_A + 8 * MiB, 4 * MiB, F_OPT, 11),          # 12195216
        entry("free_requested", SEG_B + 512, 512, F_COMM, 12),        # 12194704
        entry("oom", None, 1 << 30, NO_FRAMES, 13, device_free=123456),
        entry("snapshot", 0, 0, None, 14),
    ]
    # Device 1, without time_us (older PyTorch): times are entry counts.
    dev1 = [
        entry("alloc", SEG_D + 1024, 3000, F_TMP),      # start 1000; 4000
        entry("alloc", SEG_D + 4096, 500, F_SCRATCH),   # 4500  peak
        entry("free_requested", SEG_D + 1024, 3000),    # 1500
        entry("free_completed", SEG_D + 1024, 3000),
        entry("free_requested", SEG_D + 4096, 500),     # 1000
        entry("free_completed", SEG_D + 4096, 500),
    ]
    return {
        "segments": segments,
        "device_traces": [dev0, dev1, []],
        "allocator_settings": {"PYTORCH_CUDA_ALLOC_CONF": None, "max_split_size": -1,
                               "expandable_segments": False},
    }


def expected_figures(snap):
    """An independent replay: allocated follows alloc/free_requested in requested
    bytes, reserved follows segment_alloc/segment_free; the end comes from the segments."""
    out = {}
    for dev, trace in enumerate(snap["device_traces"]):
        if not trace:
            continue
        segs = [s for s in snap["segments"] if s["device"] == dev]
        end_alloc = sum(b["requested_size"] for s in segs for b in s["blocks"]
                        if b["state"] == "active_allocated")
        end_res = sum(s["total_size"] for s in segs)
        da = {"alloc": 1, "free_requested": -1}
        dr = {"segment_alloc": 1, "segment_free": -1}
        alloc = end_alloc - sum(da.get(e["action"], 0) * e["size"] for e in trace)
        res = end_res - sum(dr.get(e["action"], 0) * e["size"] for e in trace)
        timed = all("time_us" in e for e in trace)
        samples = [(trace[0]["time_us"] if timed else 0, alloc, res)]
        for i, e in enumerate(trace):
            alloc += da.get(e["action"], 0) * e["size"]
            res += dr.get(e["action"], 0) * e["size"]
            samples.append((e["time_us"] if timed else i + 1, alloc, res))
        peak = max(samples, key=lambda s: s[1])
        out[dev] = {"samples": samples, "peak": peak,
                    "peak_reserved": max(s[2] for s in samples),
                    "fragmentation": peak[2] - peak[1]}
    return out


def main():
    for p in (0, 2, 4, 5):
        v = pickle_value(p)
        data = pickle.dumps(v, protocol=p)
        assert canon(pickle.loads(data)) == canon(v)
        write("pickle_values_p%d.pickle" % p, data)
        write("pickle_values_p%d.expected" % p, (canon(v) + "\n").encode())
        write("pickle_evil_os_system_p%d.pickle" % p, pickle.dumps(Evil(), protocol=p))

    snap = snapshot()
    data = pickle.dumps(snap, protocol=4)
    write("cuda_snapshot_two_devices.pickle", data)
    write("cuda_snapshot_two_devices.json", json.dumps(snap, indent=1).encode())
    write("cuda_snapshot_two_devices.pickle.gz", gzip.compress(data, mtime=0))

    blk = {"address": SEG_A, "size": 512, "requested_size": 512, "state": "active_allocated",
           "frames": NO_FRAMES}
    seg = segment(0, SEG_A, "small", [blk] * 2000)
    write("cuda_snapshot_memo_bomb.pickle",
          pickle.dumps({"segments": [seg] * 2000, "device_traces": []}, protocol=4))

    figs = expected_figures(snap)
    d0, d1 = figs[0], figs[1]
    # The hand-worked numbers of the comments above.
    assert d0["samples"][0][1:] == (14292368, 28 * MiB)
    assert d0["peak"] == (T0 + 20, 41555344, 60 * MiB)
    assert d0["samples"][-1][1:] == (12194704, 22 * MiB)
    assert d1["peak"] == (2, 4500, 2 * MiB)
    for dev, f in figs.items():
        print("cuda:%d" % dev)
        print("  first sample (time_us, allocated, reserved):", f["samples"][0])
        print("  last sample:", f["samples"][-1])
        print("  samples:", len(f["samples"]))
        print("  peak (time_us, allocated, reserved):", f["peak"])
        print("  peak reserved:", f["peak_reserved"])
        print("  fragmentation at peak:", f["fragmentation"])


if __name__ == "__main__":
    main()
