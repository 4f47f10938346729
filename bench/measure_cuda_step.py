#!/usr/bin/env python3
"""Measure training steps of a Hugging Face model built from its config.json, on a CUDA GPU.

What `trainmem analyze --device=cuda` predicts, measured with PyTorch's own counters:
transformers builds the model from the config on the GPU (fp32, or bf16 with --bf16) (no weights downloaded), and
each step is forward (labels given, the model's loss), backward, optimizer.step(),
zero_grad(set_to_none=True). For every step the script records, from
torch.cuda.memory_allocated / max_memory_allocated (the caching allocator's live blocks,
each rounded up to 512 bytes):

  peak        the largest total of live tensor bytes during the step, less the cuBLAS
              workspaces (the allocator holds them as blocks; trainmem counts them in
              peak_reserved, not in the tensors' peak)
  phases      the peak of forward, backward and the optimizer step, each the same way
  saved       bytes the forward left alive once its output (the logits) is dropped
  workspace   bytes allocated at the step's start beyond parameters, buffers and
              optimizer states: cuBLAS's workspaces, one per handle
  requested   each phase's peak the same way from the bytes the tensors asked for
              (memory_stats' requested_bytes: no rounding to 512 B, no unsplit block
              remainders)
  reserved    torch.cuda.max_memory_reserved over the step (the caching allocator's
              segments, what trainmem's peak_reserved replays, less the CUDA context)

Optimizers: torch.optim.AdamW (--impl foreach, fused or forloop), or galore-torch's
GaLoreAdamW (--galore-rank) with its param groups as Hugging Face's Trainer builds them:
the other parameters first, then the nn.Linear weights whose module names contain a
--galore-targets key. galore-torch is read from --galore-src (a folder holding adamw.py and
galore_projector.py), without its package __init__, which imports bitsandbytes.

Needs torch with CUDA and transformers (and peft for --lora-rank); trainmem does not. Prints
one JSON case on stdout. Example:

  python bench/measure_cuda_step.py samples/hf/tinyllama-1.1b/config.json --batch 1 \\
      --seq 128 --galore-rank 8 --galore-src /path/to/galore_torch
"""
import argparse
import importlib
import json
import sys
import types

import torch
import transformers

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("config")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--steps", type=int, default=3, help="steps run; step 1 creates the optimizer states")
ap.add_argument("--impl", default="foreach", choices=["foreach", "fused", "forloop"],
                help="torch.optim.AdamW's implementation")
ap.add_argument("--bf16", action="store_true", help="the model in bfloat16 (pure, no autocast)")
ap.add_argument("--amp-bf16", action="store_true", help="fp32 weights, forward under torch.autocast(bfloat16)")
ap.add_argument("--lora-rank", type=int, default=0, help="PEFT LoRA of this rank on its default targets")
ap.add_argument("--galore-rank", type=int, default=0)
ap.add_argument("--galore-targets", default="attn,mlp")
ap.add_argument("--galore-gap", type=int, default=200, help="update_proj_gap: the projector's refresh period")
ap.add_argument("--galore-scale", type=float, default=0.25)
ap.add_argument("--galore-src", default="", help="galore-torch's galore_torch folder")


def galore_adamw(src):
    pkg = types.ModuleType("galore_torch")
    pkg.__path__ = [src]
    sys.modules["galore_torch"] = pkg
    return importlib.import_module("galore_torch.adamw").AdamW


def build(args):
    d = json.load(open(args.config))
    model_type = d.pop("model_type")
    d.pop("torch_dtype", None)
    d.pop("dtype", None)
    cfg = transformers.AutoConfig.for_model(model_type, **d)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(
            cfg, dtype=torch.bfloat16 if args.bf16 else torch.float32)
    if args.lora_rank:
        import peft
        model = peft.get_peft_model(model, peft.LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank,
                                                           lora_dropout=0.0))
    model.train()
    return model, cfg


def optimizer(model, args):
    if not args.galore_rank:
        params = [p for p in model.parameters() if p.requires_grad]
        kw = {"foreach": dict(foreach=True), "fused": dict(fused=True),
              "forloop": dict(foreach=False)}[args.impl]
        return torch.optim.AdamW(params, lr=1e-4, **kw)
    keys = args.galore_targets.split(",")
    galore = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and any(k in name for k in keys):
            galore.append(module.weight)
    ids = {id(p) for p in galore}
    regular = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    cls = galore_adamw(args.galore_src)
    return cls([{"params": regular},
                {"params": galore, "rank": args.galore_rank, "update_proj_gap": args.galore_gap,
                 "scale": args.galore_scale, "proj_type": "std"}],
               lr=1e-4, weight_decay=0.0, no_deprecation_warning=True)


def resident(model, opt):
    """Parameters, buffers and optimizer states: what a step starts from."""
    seen, total = set(), 0
    tensors = list(model.parameters()) + list(model.buffers())
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                tensors.append(v)
            elif hasattr(v, "ortho_matrix") and torch.is_tensor(v.ortho_matrix):
                tensors.append(v.ortho_matrix)  # GaLore's projector
    for t in tensors:
        s = t.untyped_storage()
        if s.data_ptr() not in seen and t.is_cuda:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total


def main():
    args = ap.parse_args()
    torch.manual_seed(0)
    model, cfg = build(args)
    opt = optimizer(model, args)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device="cuda")
    labels = ids.clone()
    steps = []
    for step in range(1, args.steps + 1):
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        requested_start = torch.cuda.memory_stats().get("requested_bytes.all.current", 0)
        workspace = start - resident(model, opt) - ids.nbytes - labels.nbytes
        phases, requested, reserved = {}, {}, 0

        def phase_end(name):
            nonlocal reserved
            phases[name] = torch.cuda.max_memory_allocated()
            requested[name] = torch.cuda.memory_stats().get("requested_bytes.all.peak", 0)
            reserved = max(reserved, torch.cuda.max_memory_reserved())
            torch.cuda.reset_peak_memory_stats()

        torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp_bf16):
            out = model(input_ids=ids, labels=labels)
        loss = out.loss
        phase_end("forward")
        del out
        saved = torch.cuda.memory_allocated() - start
        loss.backward()
        del loss
        phase_end("backward")
        opt.step()
        phase_end("optimizer")
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        # Counted from the step's start: parameters, buffers, inputs and states (states
        # created in step 1 count from their creation), the workspaces taken out.
        base = start - workspace
        phases = {k: v - start + base for k, v in phases.items()}
        requested = {k: v - requested_start + base for k, v in requested.items()}
        steps.append({"step": step, "peak_bytes": max(phases.values()), "phases": phases,
                      "requested_phases": requested, "reserved_bytes": reserved,
                      "saved_bytes": saved, "workspace_bytes": workspace,
                      "start_bytes": base})
    case = {"config": args.config, "batch": args.batch, "seq": args.seq,
            "precision": "bf16" if args.bf16 else "amp-bf16" if args.amp_bf16 else "fp32",
            "optimizer": "galore-adamw" if args.galore_rank else "adamw-" + args.impl,
            "lora_rank": args.lora_rank or None,
            "galore": dict(rank=args.galore_rank, targets=args.galore_targets, gap=args.galore_gap,
                           scale=args.galore_scale) if args.galore_rank else None,
            "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
            "transformers": transformers.__version__, "steps": steps}
    json.dump(case, sys.stdout)
    print()


if __name__ == "__main__":
    main()
