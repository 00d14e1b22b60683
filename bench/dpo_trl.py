"""TRL's side of `dagrun bench dpo`.

Reads the pairs dagrun wrote (conversational: one user turn, two assistant answers), loads the
same model (a GGUF file, dequantised to f32 as transformers does, or a Hugging Face directory),
and trains one epoch of DPO over them per repeat with TRL's DPOTrainer and a PEFT LoRA adapter
set up as dagrun's default (rank 8, alpha 16, dropout 0, q/k/v/o/gate/up/down), batch = the
pairs per step, no accumulation, f32, no gradient checkpointing. TRL's reference is the base
model with the adapter disabled, run every step. Prints one JSON line: pairs and tokens per
second, the median of the repeats after a one-step warm-up.

usage: python3 dpo_trl.py MODEL PAIRS.json [--threads N] [--device cpu|cuda]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("pairs")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    import datasets
    import peft
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    p = json.load(open(a.pairs))
    model_dir = a.model
    if os.path.isfile(a.model):
        # Trainer refuses GGUF-loaded models, so the dequantised weights go through a plain
        # f32 safetensors copy first (the same weights dagrun dequantises).
        import tempfile
        d, f = os.path.dirname(a.model) or ".", os.path.basename(a.model)
        model_dir = tempfile.mkdtemp(prefix="dagrun-dpo-trl-")
        m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        m.config.quantization_config = None
        if hasattr(m, "hf_quantizer"):
            m.hf_quantizer = None
        m.save_pretrained(model_dir)
        AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(model_dir)
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        cfg.pop("quantization_config", None)
        json.dump(cfg, open(os.path.join(model_dir, "config.json"), "w"))
    load = lambda: AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = {
        "prompt": [[{"role": "user", "content": x["prompt"]}] for x in p["pairs"]],
        "chosen": [[{"role": "assistant", "content": x["chosen"]}] for x in p["pairs"]],
        "rejected": [[{"role": "assistant", "content": x["rejected"]}] for x in p["pairs"]],
    }
    batch = p["batch"]
    lora = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM")

    def epoch(n):
        ds = datasets.Dataset.from_dict({k: v[:n] for k, v in rows.items()})
        args = DPOConfig(
            output_dir="/tmp/dagrun-bench-dpo-trl", beta=0.1, learning_rate=5e-5, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
            num_train_epochs=1, logging_steps=10**6, report_to=[], save_strategy="no", use_cpu=a.device == "cpu", bf16=False, fp16=False,
            max_length=1 << 20, disable_tqdm=True, dataloader_num_workers=0,
            # TRL >= 1.0 turns gradient checkpointing on by default (recomputing the forward
            # in the backward); dagrun keeps activations, so compare like with like.
            gradient_checkpointing=False,
        )
        trainer = DPOTrainer(model=load(), args=args, train_dataset=ds, processing_class=tok, peft_config=lora)
        if a.device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        trainer.train()
        if a.device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    epoch(batch)
    secs = [epoch(len(p["pairs"])) for _ in range(max(p["repeats"], 1))]
    sec = statistics.median(secs)
    print(json.dumps({
        "pairs_per_second": len(p["pairs"]) / sec,
        "version": f"TRL {trl.__version__}, PEFT {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)",
    }))


if __name__ == "__main__":
    sys.exit(main())
