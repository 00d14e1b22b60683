"""sentence-transformers' side of `dagrun bench encode`.

Reads the texts dagrun wrote, loads the same model directory with sentence-transformers and
prints one JSON line: texts per second for `SentenceTransformer.encode` over all the texts
(tokenisation included, as a user calls it), the median of the repeats after one warm-up.
Where sentence-transformers is not installed (a GPU machine without network), it does what
`encode` does with plain transformers instead — texts sorted by length, batches padded to
their longest, mean pooling, normalisation — and says so in its version line.

usage: python3 encode_sentence_transformers.py MODEL_DIR TEXTS.json [--threads N] [--device cpu|cuda]
"""
import argparse
import json
import statistics
import sys
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("texts")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    p = json.load(open(a.texts))
    texts, batch = p["texts"], p["batch_size"]
    dev = torch.device(a.device)
    import transformers
    try:
        import sentence_transformers
        model = sentence_transformers.SentenceTransformer(a.model, device=a.device)
        encode = lambda: model.encode(texts, batch_size=batch, convert_to_numpy=True)
        who = f"sentence-transformers {sentence_transformers.__version__}, max_seq_length {model.max_seq_length}"
    except ImportError:
        encode, max_len = plain_encoder(a.model, dev, texts, batch)
        who = f"plain transformers mean pooling (sentence-transformers not installed), max_length {max_len}"

    def once():
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        encode()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    times = [once() for _ in range(max(p["repeats"], 1) + 1)][1:]
    print(json.dumps({
        "texts_per_second": len(texts) / statistics.median(times),
        "version": f"{who}, transformers {transformers.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }))


def plain_encoder(path, dev, texts, batch):
    """SentenceTransformer.encode's work for a mean-pooling model, in plain transformers."""
    import os
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32).to(dev).eval()
    max_len = 512
    st = os.path.join(path, "sentence_bert_config.json")
    if os.path.exists(st):
        max_len = json.load(open(st)).get("max_seq_length", max_len)

    def encode():
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = [None] * len(texts)
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                idx = order[s:s + batch]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(dev)
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                v = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1).cpu()
                for k, i in enumerate(idx):
                    out[i] = v[k]
        return out
    return encode, max_len


if __name__ == "__main__":
    sys.exit(main())
