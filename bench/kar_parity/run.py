#!/usr/bin/env python3
"""KAR parity: train DLCM and PRM, with and without knowledge, in dagrun and in the KAR
authors' PyTorch code (RS/main_rerank.py, run unmodified from a checkout you provide) on the
same synthetic world and the same fixed knowledge vectors, with the same hyperparameters, over
several training seeds; print and write a table of test MAP@5 / NDCG@5 and training speed.

    python3 bench/kar_parity/run.py --kar-repo PATH/TO/Open-World-Knowledge-Augmented-Recommendation \\
        [--dagrun target/release/dagrun] [--seeds 1 2 3] [--out docs/kar_parity.md]

Needs python packages torch, numpy, scikit-learn, pyarrow (for KAR's code and the export).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINE = os.path.join(HERE, "pipeline.yaml")
CONFIGS = [("dlcm_base", "DLCM", False), ("dlcm_kar", "DLCM", True), ("prm_base", "PRM", False), ("prm_kar", "PRM", True)]


def sh(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def ours(dagrun, work, seed, a):
    sets = ["--set", f"vars.train_seed={seed}", "--set", f"vars.epochs={a.epochs}", "--set", f"vars.batch={a.batch}", "--set", f"vars.lr={a.lr}"]
    r = sh([dagrun, PIPELINE, "-j", "1", *sets], cwd=work)
    speed = {m.group(1): float(m.group(2)) for m in re.finditer(r"\[(\w+)\] kept epoch \d+: .*\((\d+) lists/s\)", r.stderr)}
    out = {}
    for name, _, _ in CONFIGS:
        rows = json.loads(sh([dagrun, "show", PIPELINE, f"eval_{name}", "--format", "json", *sets], cwd=work).stdout)
        at5 = next(x for x in rows if x["k"] == 5)
        out[name] = (at5["map"], at5["ndcg"], speed.get(name))
    return out


def theirs(python, rs_dir, proc, seed, algo, augment, a):
    cmd = [python, "main_rerank.py", "--data_dir", proc, "--save_dir", os.path.join(proc, "models"), "--algo", algo,
           "--augment", "true" if augment else "false", "--aug_prefix", "synth", "--epoch_num", str(a.epochs),
           "--batch_size", str(a.batch), "--lr", str(a.lr), "--seed", str(seed), "--device", "cpu"]
    r = sh(cmd, cwd=rs_dir)
    lines = r.stdout.splitlines()
    # Per epoch: "epoch: N, train time: T, ..." followed by "@k, MAP: .., NDCG: ..".
    best, times = None, []
    for i, line in enumerate(lines):
        m = re.match(r"epoch: (\d+), train time: ([\d.]+)", line)
        if m:
            times.append(float(m.group(2)))
            for l2 in lines[i + 1:i + 5]:
                m5 = re.match(r"@5, MAP: ([\d.]+), NDCG: ([\d.]+)", l2)
                if m5:
                    mp, nd = float(m5.group(1)), float(m5.group(2))
                    if best is None or mp > best[0]:
                        best = (mp, nd)
    n_train = int(re.search(r"Train data size: (\d+)", r.stdout).group(1))
    return best[0], best[1], n_train / statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kar-repo", required=True)
    ap.add_argument("--dagrun", default="target/release/dagrun")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dagrun = os.path.abspath(a.dagrun)
    work = tempfile.mkdtemp(prefix="kar_parity_")
    sh([dagrun, PIPELINE, "--until", "truth", "-q"], cwd=work)
    dataset = sh([dagrun, "show", PIPELINE, "data", "--path"], cwd=work).stdout.strip()
    users = sh([dagrun, "show", PIPELINE, "truth.users", "--path"], cwd=work).stdout.strip()
    items = sh([dagrun, "show", PIPELINE, "truth.items", "--path"], cwd=work).stdout.strip()
    proc = os.path.join(work, "proc")
    sh([a.python, os.path.join(HERE, "export_kar.py"), os.path.join(work, dataset), proc,
        "--users", os.path.join(work, users), "--items", os.path.join(work, items), "--prefix", "synth"])
    rs_dir = os.path.join(os.path.abspath(a.kar_repo), "RS")

    results = {name: {"ours": [], "kar": []} for name, _, _ in CONFIGS}
    for seed in a.seeds:
        o = ours(dagrun, work, seed, a)
        for name, algo, aug in CONFIGS:
            results[name]["ours"].append(o[name])
            results[name]["kar"].append(theirs(a.python, rs_dir, proc, seed, algo, aug, a))
            print(f"seed {seed} {name}: ours {o[name]}, KAR {results[name]['kar'][-1]}", flush=True)

    mean = lambda xs, i: statistics.mean(x[i] for x in xs if x[i] is not None)
    lines = [
        f"Synthetic world: {a.epochs} epochs max, batch {a.batch}, lr {a.lr}, patience 3, best epoch by test MAP@5 "
        f"(KAR's selection), knowledge dim 64; means over training seeds {a.seeds}.",
        "",
        "| model | dagrun MAP@5 | KAR MAP@5 | diff | dagrun NDCG@5 | KAR NDCG@5 | diff | dagrun lists/s | KAR lists/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, _, _ in CONFIGS:
        o, k = results[name]["ours"], results[name]["kar"]
        om, km, on, kn = mean(o, 0), mean(k, 0), mean(o, 1), mean(k, 1)
        lines.append(f"| {name} | {om:.4f} | {km:.4f} | {om - km:+.4f} | {on:.4f} | {kn:.4f} | {on - kn:+.4f} | {mean(o, 2):.0f} | {mean(k, 2):.0f} |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
