"""Hugging Face transformers' side of `dagrun bench llm`.

Reads the token ids dagrun wrote (so both tools do identical work), loads the same model
(a GGUF file, dequantised to f32 as transformers does, or a Hugging Face directory) and prints
one JSON line: prefill, batch-1 decode and batched-sampling tokens per second, each the median
of the repeats after one warm-up, measured through `generate` as a user would call it:

  prefill   prompt tokens / time of generate(max_new_tokens=1)
  decode    new tokens / (time of generate(N+1 new tokens) - time of generate(1 new token))
  sampling  all new tokens / time of generate(batch, do_sample, temperature 0.7, N new tokens)
  batch_prefill  the batch's prompt tokens / time of generate(batch, max_new_tokens=1)

EOS is ignored (min_new_tokens = max_new_tokens), as on dagrun's side.

On a GPU it also measures how far PyTorch's own TF32 matmuls move the next-token logits from
its CPU f32 ones (`tf32_logit_diff`, with `gpu_f32_logit_diff` for TF32 off), over the batch
prompts and 8 greedy steps chosen on the CPU: Burn's CUDA backend runs f32 matmuls on TF32
tensor cores, so this is the yardstick for dagrun's CUDA-vs-CPU difference.

usage: python3 llm_transformers.py MODEL PROMPTS.json [--threads N] [--device cpu|cuda]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    p = json.load(open(a.prompts))
    if os.path.isfile(a.model):
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(a.model) or ".", gguf_file=os.path.basename(a.model), dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    dev = torch.device(a.device)
    model = model.to(dev).eval()
    n = p["new_tokens"]
    rounds = max(p["repeats"], 1) + 1
    pad = model.config.eos_token_id if model.config.pad_token_id is None else model.config.pad_token_id
    if isinstance(pad, list):
        pad = pad[0]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def gen(ids, mask, new, sample):
        sync()
        t = time.perf_counter()
        with torch.inference_mode():
            kw = dict(do_sample=True, temperature=0.7, top_p=1.0, top_k=0) if sample else dict(do_sample=False)
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, pad_token_id=pad, **kw)
        sync()
        return time.perf_counter() - t

    def median(f):
        return statistics.median([f() for _ in range(rounds)][1:])

    single = torch.tensor([p["single"]], device=dev)
    ones = torch.ones_like(single)
    t1 = median(lambda: gen(single, ones, 1, False))
    tn = median(lambda: gen(single, ones, n + 1, False))
    width = max(len(r) for r in p["batch"])
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in p["batch"]], device=dev)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in p["batch"]], device=dev)
    ts = median(lambda: gen(ids, mask, n, True))
    tb = median(lambda: gen(ids, mask, 1, False))
    noise = tf32_noise(model, p["batch"], pad, dev) if dev.type == "cuda" else {}
    import transformers
    print(json.dumps({
        **noise,
        "prefill": len(p["single"]) / t1,
        "decode": n / (tn - t1),
        "sampling": n * len(p["batch"]) / ts,
        "batch_prefill": sum(len(r) for r in p["batch"]) / tb,
        "version": f"transformers {transformers.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }))


def tf32_noise(model, rows, pad, dev, steps=8):
    """Largest |GPU - CPU| next-token logit difference with TF32 matmuls on and off."""
    def logits(m, where, tokens):
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=where)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=where)
        out = []
        with torch.inference_mode():
            for s in range(steps + 1):
                pos = (mask.cumsum(1) - 1).clamp(min=0)
                o = m(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float().cpu()
                out.append(o)
                if s == steps:
                    break
                nxt = o.argmax(-1, keepdim=True) if tokens is None else tokens[s]
                ids = torch.cat([ids, nxt.to(where)], 1)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        return out
    cpu_model = model.to("cpu")
    cpu = logits(cpu_model, "cpu", None)
    tokens = [o.argmax(-1, keepdim=True) for o in cpu]
    gpu_model = cpu_model.to(dev)
    diffs = {}
    for name, tf32 in (("gpu_f32_logit_diff", False), ("tf32_logit_diff", True)):
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            gpu = logits(gpu_model, dev, tokens)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
        diffs[name] = max((a - b).abs().max().item() for a, b in zip(cpu, gpu))
    return diffs


if __name__ == "__main__":
    sys.exit(main())
