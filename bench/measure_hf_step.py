#!/usr/bin/env python3
"""Measure one training step of a Hugging Face model built from its config.json, on the CPU.

The numbers `tests/data/measured-hf/cases.json` holds were taken with this script:
transformers builds the model from the config (no weights are downloaded), trains it for two
steps under torch.profiler with memory profiling, one intra-op thread, and the second step is
measured the way ../shared/fixtures/gt/harness.py measures its cases:

  peak   the largest total of live tensor bytes during step 2 (Total Allocated of the
         profiler's allocation events; sentinel allocations of odd sizes mark the phases and
         are left out)
  saved  bytes the forward left alive, minus the logits: what backward will read (the loss
         included), as `trainmem analyze` reports "activations (saved)" at the end of the
         forward

Needs PyPI's torch (CPU) and transformers, and peft for --lora-rank; trainmem does not. Prints
one JSON case on stdout. Example (the venv is any with those packages):

  python bench/measure_hf_step.py tests/data/measured-hf/configs/tiny-llama.json \\
      --batch 2 --seq 256 --bf16
"""
import argparse
import json
import re
import sys

import torch
import transformers
from torch.profiler import ProfilerActivity, profile


# Encoder-only types: their configs without a head name train the masked-LM head.
ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert")


def head_of(model):
    """'sequence', 'token', 'qa', 'choice' or '' (a language-model head): what the labels must look like."""
    name = type(model).__name__
    if hasattr(model, "base_model") and hasattr(model.base_model, "model"):  # a PEFT wrapper
        name = type(model.base_model.model).__name__
    return ("sequence" if name.endswith("ForSequenceClassification")
            else "token" if name.endswith("ForTokenClassification")
            else "qa" if name.endswith("ForQuestionAnswering")
            else "choice" if name.endswith("ForMultipleChoice") else "")


def build(config_path, args):
    d = json.load(open(config_path))
    model_type = d.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, **d)
    cfg._attn_implementation = args.attention
    if args.no_dropout:
        for k in list(vars(cfg)):
            if ("dropout" in k or k.endswith("pdrop") or k.endswith("_prob")) and isinstance(
                    getattr(cfg, k), float):
                setattr(cfg, k, 0.0)
    arch = (d.get("architectures") or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        auto = transformers.AutoModelForSequenceClassification
    elif arch.endswith("ForTokenClassification"):
        auto = transformers.AutoModelForTokenClassification
    elif arch.endswith("ForQuestionAnswering"):
        auto = transformers.AutoModelForQuestionAnswering
    elif arch.endswith("ForMultipleChoice"):
        auto = transformers.AutoModelForMultipleChoice
    elif model_type in ENCODERS:
        auto = transformers.AutoModelForMaskedLM
    else:
        auto = transformers.AutoModelForCausalLM
    # transformers 5 builds in the config's dtype; these configs carry none (fp32).
    model = auto.from_config(cfg)
    if args.bf16:
        model.to(torch.bfloat16)
    if args.lora_rank:
        import peft
        targets = args.lora_targets.split(",") if args.lora_targets else None
        if targets == ["all-linear"]:
            targets = "all-linear"  # PEFT's keyword, not a module name
        model = peft.get_peft_model(model, peft.LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank * 2,
                                                           lora_dropout=args.lora_dropout,
                                                           target_modules=targets,
                                                           task_type=args.lora_task or None,
                                                           exclude_modules=args.lora_exclude.split(",")
                                                           if args.lora_exclude else None,
                                                           modules_to_save=args.lora_modules_to_save.split(",")
                                                           if args.lora_modules_to_save else None))
    model.train()
    if args.checkpoint:
        model.gradient_checkpointing_enable()  # transformers 5: use_reentrant=False
        if args.lora_rank:
            model.enable_input_require_grads()
    return model, cfg, model_type


def galore_optimizer(model, args):
    """galore-torch's optimizer with Trainer's two groups, loaded from --galore-src."""
    import importlib
    import types
    pkg = types.ModuleType("galore_torch")
    pkg.__path__ = [args.galore_src]
    sys.modules["galore_torch"] = pkg
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None  # GaLoreAdamW8bit calls it every step
    eight_bit = args.optimizer == "galore-adamw8bit"
    module = importlib.import_module("galore_torch.adamw8bit" if eight_bit else "galore_torch.adamw")
    keys = args.galore_targets.split(",")
    targets = [m.weight for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and any(k in name for k in keys)]
    ids = {id(p) for p in targets}
    regular = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": regular},
              {"params": targets, "rank": args.galore_rank, "update_proj_gap": args.galore_gap,
               "scale": 0.25, "proj_type": "std"}]
    def make(groups):
        if eight_bit:
            return module.AdamW8bit(groups, lr=1e-4, weight_decay=0.0)
        return module.AdamW(groups, lr=1e-4, weight_decay=0.0, no_deprecation_warning=True)

    if not args.galore_layerwise:
        return make(groups)
    # Trainer's layer-wise GaLore: an optimizer per parameter, stepped in a hook once the
    # parameter's gradient is complete, the gradient freed there; the optimizer the loop
    # sees does nothing (transformers' LayerWiseDummyOptimizer).
    per_param = {p: make([{"params": [p]}]) for p in regular}
    per_param.update({p: make([dict(groups[1], params=[p])]) for p in targets})

    def hook(p):
        if p.grad is not None:
            per_param[p].step()
            per_param[p].zero_grad()

    for p in per_param:
        p.register_post_accumulate_grad_hook(hook)

    class Dummy:
        def step(self):
            pass

        def zero_grad(self, set_to_none=True):
            pass

    return Dummy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--bf16", action="store_true", help="the model in bfloat16 (pure, no autocast)")
    ap.add_argument("--amp-bf16", action="store_true",
                    help="fp32 weights, the forward under torch.autocast('cpu', bfloat16), as "
                         "Trainer's bf16=True on the CPU")
    ap.add_argument("--lora-dropout", type=float, default=0.0, help="PEFT's lora_dropout")
    ap.add_argument("--no-dropout", action="store_true", help="every dropout probability set to 0")
    ap.add_argument("--checkpoint", action="store_true", help="gradient checkpointing of every block")
    ap.add_argument("--optimizer", default="adamw",
                    choices=["adamw", "sgd-momentum", "galore-adamw", "galore-adamw8bit"],
                    help="galore-*: galore-torch's GaLoreAdamW or GaLoreAdamW8bit (bitsandbytes), "
                         "grouped as Hugging Face's Trainer groups them (the other parameters "
                         "first, then the nn.Linear weights whose names hold a --galore-targets key)")
    ap.add_argument("--galore-rank", type=int, default=8)
    ap.add_argument("--galore-targets", default="attn,mlp")
    ap.add_argument("--galore-gap", type=int, default=200,
                    help="update_proj_gap; 1 refreshes the projectors at every step (step 2 too)")
    ap.add_argument("--galore-layerwise", action="store_true",
                    help="one optimizer per parameter, stepped in its post-accumulate-grad hook "
                         "and its gradient then freed, as Trainer's galore_adamw_layerwise")
    ap.add_argument("--galore-src", default="",
                    help="galore-torch's galore_torch folder (read without its package __init__)")
    ap.add_argument("--lora-rank", type=int, default=0, help="PEFT LoRA of this rank on its default targets")
    ap.add_argument("--lora-targets", default="",
                    help="comma-separated module names for PEFT's target_modules (default: PEFT's for "
                         "the architecture; Phi-3 has none)")
    ap.add_argument("--lora-task", default="", choices=["", "SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS"],
                    help="PEFT's task_type: a classifier's head (classifier, score) or qa_outputs "
                         "then trains beside the adapters, as a copy (modules_to_save)")
    ap.add_argument("--choices", type=int, default=4,
                    help="a multiple-choice head's sequences per row (trainmem's --dim choices)")
    ap.add_argument("--lora-exclude", default="",
                    help="PEFT's exclude_modules: what trainmem's emitted config writes for "
                         "all-linear under TOKEN_CLS / QUESTION_ANS (the head, which PEFT would "
                         "otherwise adapt and then refuse to wrap)")
    ap.add_argument("--lora-modules-to-save", default="",
                    help="PEFT's modules_to_save, comma-separated (embed_tokens,lm_head): trained "
                         "whole beside the adapters, each a copy beside its frozen original")
    ap.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"],
                    help="transformers' attn_implementation (trainmem --attention)")
    ap.add_argument("--pad", type=int, default=0,
                    help="the batch's first row ends in this many padding tokens (attention_mask 0, "
                         "labels -100 there), as a padded batch of unequal lengths; trainmem's --padded")
    ap.add_argument("--packed", type=int, default=0,
                    help="each row packs this many sequences of seq/N tokens (position_ids restart "
                         "at each; no attention_mask), as padding-free collators feed them")
    ap.add_argument("--no-cache", action="store_true",
                    help="use_cache=False passed to the forward (transformers detects packed rows "
                         "only without a cache)")
    ap.add_argument("--grad-accum", type=int, default=1,
                    help="micro-batches of --batch each accumulated per optimizer step")
    ap.add_argument("--trainable", default="",
                    help="train only the parameters whose names match this regex (re.search); "
                         "trainmem's --sparse-update=layers:REGEX")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    base = 999_983  # sentinel sizes no tensor of these runs has
    probes = []

    def probe(name):
        size = base + 2 * len(probes)
        probes.append((name, size))
        t = torch.empty(size, dtype=torch.uint8)
        del t

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model, cfg, model_type = build(args.config, args)
        if args.trainable:
            for name, p in model.named_parameters():
                p.requires_grad_(re.search(args.trainable, name) is not None)
        params = [p for p in model.parameters() if p.requires_grad]
        if args.optimizer.startswith("galore"):
            opt = galore_optimizer(model, args)
        else:
            opt = (torch.optim.AdamW(params, lr=1e-4) if args.optimizer == "adamw"
                   else torch.optim.SGD(params, lr=1e-2, momentum=0.9))
        gen = torch.Generator().manual_seed(1)
        head = head_of(model)
        # A multiple-choice head reads [batch, choices, seq] and one right choice per row.
        shape = (args.batch, args.choices, args.seq) if head == "choice" else (args.batch, args.seq)
        ids = torch.randint(0, cfg.vocab_size, shape, generator=gen)
        # Classification heads take class indices: one per row, or one per token; a
        # question-answering head an answer's span, a start and an end position per row
        # (and nothing else: a tensor left in a local would count as live).
        if head == "qa":
            inputs = dict(input_ids=ids,
                          start_positions=torch.randint(0, args.seq, (args.batch,), generator=gen),
                          end_positions=torch.randint(0, args.seq, (args.batch,), generator=gen))
        else:
            labels = (torch.randint(0, cfg.num_labels, (args.batch,), generator=gen)
                      if head == "sequence"
                      else torch.randint(0, args.choices, (args.batch,), generator=gen)
                      if head == "choice"
                      else torch.randint(0, cfg.num_labels, (args.batch, args.seq), generator=gen)
                      if head == "token" else ids.clone())
            inputs = dict(input_ids=ids, labels=labels)
            del labels
        if model_type == "bert":
            inputs["token_type_ids"] = torch.zeros_like(ids)
        if model_type in ENCODERS:
            # What a tokenizer hands an encoder (RoBERTa's returns no token types).
            inputs["attention_mask"] = torch.ones_like(ids)
        if args.pad:
            mask = torch.ones_like(ids)
            mask[0, ..., args.seq - args.pad:] = 0
            inputs["attention_mask"] = mask
            if head in ("token", ""):
                inputs["labels"][0, args.seq - args.pad:] = -100
        if args.packed:
            pos = torch.arange(args.seq // args.packed).repeat(args.packed)
            inputs["position_ids"] = pos.unsqueeze(0).expand(args.batch, -1).contiguous()
        if args.no_cache:
            inputs["use_cache"] = False
        for step in (1, 2):
            probe(f"s{step}_start")
            for micro in range(args.grad_accum):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp_bf16):
                    out = model(**inputs)
                    loss = out.loss / args.grad_accum if args.grad_accum > 1 else out.loss
                if micro == 0:
                    probe(f"s{step}_before_backward")
                del out
                if micro == 0:
                    probe(f"s{step}_logits_dropped")
                loss.backward()
                del loss
            probe(f"s{step}_after_backward")
            opt.step()
            opt.zero_grad(set_to_none=True)
            probe(f"s{step}_end")

    allocs = []

    def walk(ev):
        if "Allocation" in type(ev.extra_fields).__name__:
            allocs.append((ev.start_time_ns, int(ev.extra_fields.alloc_size), int(ev.extra_fields.total_allocated)))
        for c in ev.children:
            walk(c)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    allocs.sort(key=lambda a: a[0])
    sentinel = {size: name for name, size in probes}
    at = {}
    for i, (_, size, total) in enumerate(allocs):
        if size in sentinel:
            at[sentinel[size]] = (i, total - size)
    first, last = at["s2_start"][0], at["s2_end"][0]
    peak = max(total for _, size, total in allocs[first:last + 1] if abs(size) not in sentinel)
    saved = at["s2_logits_dropped"][1] - at["s2_start"][1]
    case = {
        "config": args.config.split("/")[-1],
        "batch": args.batch, "seq": args.seq,
        "choices": args.choices if head == "choice" else None,
        "precision": "bf16" if args.bf16 else "amp-bf16" if args.amp_bf16 else "fp32",
        "dropout": 0.0 if args.no_dropout else None,
        "checkpoint": "blocks" if args.checkpoint else "none",
        "optimizer": args.optimizer,
        "galore": dict(rank=args.galore_rank, targets=args.galore_targets, gap=args.galore_gap,
                       **({"layerwise": True} if args.galore_layerwise else {}))
        if args.optimizer.startswith("galore") else None,
        "grad_accum": args.grad_accum if args.grad_accum > 1 else None,
        "attention": args.attention if args.attention != "sdpa" else None,
        "lora_rank": args.lora_rank,
        "lora_dropout": args.lora_dropout or None,
        "lora_targets": args.lora_targets or None,
        "lora_task": args.lora_task or None,
        "lora_modules_to_save": args.lora_modules_to_save or None,
        "lora_exclude": args.lora_exclude or None,
        "trainable": args.trainable or None,
        "padded": args.pad or None,
        "packed": args.packed or None,
        "use_cache": False if args.no_cache else None,
        "measured": {"peak_bytes": peak, "saved_bytes": saved},
        "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
    }
    json.dump(case, sys.stdout)
    print()


if __name__ == "__main__":
    main()
