#!/usr/bin/env python3
"""What a transformers model's forward saves for backward, by autograd node.

Builds the model from a Hugging Face config.json (no weights downloaded), runs one forward
with labels, then walks the autograd graph from the loss and lists every tensor a node
keeps (its `_saved_*` attributes), each storage counted once and parameters left out,
summed by node and attribute. Against `trainmem analyze`'s "activations (saved)" this
shows which op's rule is off; on CUDA the node names also tell which SDPA kernel ran
(ScaledDotProductEfficientAttentionBackward0, ...CudnnAttention..., ...FlashAttention...,
or BmmBackward0 and SoftmaxBackward0 for the math kernel). With --device cuda it also
prints torch.cuda.memory_allocated's growth over the forward, which counts what is alive
but saved by no node.

Needs torch and transformers; trainmem does not. Example (the H200 session that found
CUDA's math kernel for fp32 with grouped key/value heads):

  python bench/saved_tensors.py samples/hf/tinyllama-1.1b/config.json --layers 1 \\
      --batch 1 --seq 128 --device cuda
"""
import argparse
import collections
import json

import torch
import transformers

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("config")
ap.add_argument("--layers", type=int, default=0, help="num_hidden_layers (0: the config's)")
ap.add_argument("--kv-heads", type=int, default=0, help="num_key_value_heads (0: the config's)")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--bf16", action="store_true", help="the model in bfloat16")
ap.add_argument("--amp-bf16", action="store_true", help="the forward under torch.autocast(bfloat16)")
ap.add_argument("--device", default="cpu")
ap.add_argument("--all", action="store_true", help="list every saved tensor, not only attention's")


def main():
    args = ap.parse_args()
    torch.manual_seed(0)
    d = json.load(open(args.config))
    model_type = d.pop("model_type")
    d.pop("torch_dtype", None)
    if args.layers:
        d["num_hidden_layers"] = args.layers
    if args.kv_heads:
        d["num_key_value_heads"] = args.kv_heads
    cfg = transformers.AutoConfig.for_model(model_type, **d)
    with torch.device(args.device):
        model = transformers.AutoModelForCausalLM.from_config(
            cfg, dtype=torch.bfloat16 if args.bf16 else torch.float32)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=args.device)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
    with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.amp_bf16):
        out = model(input_ids=ids, labels=ids)
    loss = out.loss
    del out
    seen, by_node, rows = set(), collections.Counter(), []
    stack, visited = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            try:
                value = getattr(node, attr)
            except Exception:  # an attribute freed or not readable
                continue
            for t in value if isinstance(value, (tuple, list)) else [value]:
                if not torch.is_tensor(t):
                    continue
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr in params or ptr in seen:
                    continue
                seen.add(ptr)
                by_node[(node.name(), attr)] += storage.nbytes()
                rows.append((node.name(), attr, tuple(t.shape), str(t.dtype), storage.nbytes()))
        stack.extend(n for n, _ in node.next_functions)
    total = sum(by_node.values())
    line = f"saved for backward: {total:,} B in {len(seen)} storages"
    if cuda:
        torch.cuda.synchronize()
        line += f"; memory_allocated grew {torch.cuda.memory_allocated() - start:,} B over the forward"
    print(line)
    for (name, attr), size in sorted(by_node.items(), key=lambda kv: -kv[1]):
        print(f"  {size:>14,}  {name}.{attr}")
    for row in rows:
        if args.all or any(k in row[0] for k in ("ttention", "Softmax", "Bmm")):
            print("   ", row)


if __name__ == "__main__":
    main()
