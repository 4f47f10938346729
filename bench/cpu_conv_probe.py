#!/usr/bin/python3
"""Measures what torch's CPU convolutions allocate (c10 allocator events under the profiler):
the forward and backward allocation sequence of one 2-D convolution, per backend.

The rules in analyzer/OpMemoryRules.cpp (cpuConvolutionScratch) were read off this probe on
Debian's python3-torch 1.13.1 with OMP_NUM_THREADS=1. On an AVX-512 machine, ONEDNN_MAX_CPU_ISA=AVX2
reproduces the fixtures' AVX2 machine for fp32 (the fixture cases' peaks come out to the byte);
bf16 on AVX2 is reproduced with --no-mkldnn (torch sends bf16 to THNN there).

  OMP_NUM_THREADS=1 ONEDNN_MAX_CPU_ISA=AVX2 bench/cpu_conv_probe.py [--no-mkldnn] [--bf16] \\
      N,Cin,Cout,H,W,k,stride,pad ...
  bench/cpu_conv_probe.py --grid      # which weight-gradient kernel oneDNN picks, by input size

Needs torch (Debian python3-torch); never a dependency of trainmem or its tests.
"""
import argparse
import torch
import torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity


def allocations(prof, name):
    """Allocation sizes (negative: frees) inside the first op called `name`, in order."""
    tree, flat = prof.profiler.kineto_results.experimental_event_tree(), []

    def walk(ev):
        flat.append(ev)
        for c in ev.children:
            walk(c)
    for root in tree:
        walk(root)
    ops = [e for e in flat if e.name == name]
    if not ops:
        return []
    op = ops[0]
    allocs = sorted((e for e in flat if 'Allocation' in type(e.extra_fields).__name__),
                    key=lambda e: e.start_time_ns)
    return [int(e.extra_fields.alloc_size) for e in allocs
            if op.start_time_ns <= e.start_time_ns <= op.end_time_ns]


def probe(spec, dtype, mkldnn, input_grad=True):
    n, cin, cout, h, w, k, stride, pad = spec
    x = torch.randn(n, cin, h, w, dtype=dtype, requires_grad=input_grad)
    wt = torch.randn(cout, cin, k, k, dtype=dtype, requires_grad=True)
    with torch.backends.mkldnn.flags(enabled=mkldnn):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            y = F.conv2d(x, wt, None, stride, pad)
            torch.autograd.grad(y, [t for t in (x, wt) if t.requires_grad], torch.ones_like(y))
    return allocations(prof, 'aten::convolution'), allocations(prof, 'aten::convolution_backward')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('specs', nargs='*')
    ap.add_argument('--bf16', action='store_true')
    ap.add_argument('--no-mkldnn', action='store_true')
    ap.add_argument('--grid', action='store_true')
    a = ap.parse_args()
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    if a.grid:
        for k, s, p in [(3, 1, 1), (3, 2, 1), (5, 1, 2), (7, 2, 3)]:
            for h in range(1, 9):
                oh = (h + 2 * p - k) // s + 1
                wbytes = 16 * 16 * k * k * 4
                _, bwd = probe((4, 16, 16, h, 4, k, s, p), dtype, True)
                gemm = any(b >= 4 * wbytes for b in bwd)
                print(f'k={k} s={s} p={p} IH={h} OH={oh}: {"gemm" if gemm else "direct"}')
        return
    for spec in a.specs:
        fwd, bwd = probe([int(v) for v in spec.split(',')], dtype, not a.no_mkldnn)
        print(spec, 'forward', fwd, 'backward', bwd)


if __name__ == '__main__':
    main()
