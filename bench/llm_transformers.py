"""Hugging Face transformers' side of `dagrun bench llm`.

Reads the token ids dagrun wrote (so both tools do identical work), loads the same model
(a GGUF file, dequantised to f32 as transformers does, or a Hugging Face directory) and prints
one JSON line: prefill, batch-1 decode and batched-sampling tokens per second, each the median
of the repeats after one warm-up, measured through `generate` as a user would call it:

  prefill   prompt tokens / time of generate(max_new_tokens=1)
  decode    new tokens / (time of generate(N+1 new tokens) - time of generate(1 new token))
  sampling  all new tokens / time of generate(batch, do_sample, temperature 0.7, N new tokens)

EOS is ignored (min_new_tokens = max_new_tokens), as on dagrun's side.

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
    import transformers
    print(json.dumps({
        "prefill": len(p["single"]) / t1,
        "decode": n / (tn - t1),
        "sampling": n * len(p["batch"]) / ts,
        "version": f"transformers {transformers.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }))


if __name__ == "__main__":
    sys.exit(main())
