#!/usr/bin/env python3
"""Write a dagrun Dataset (and, optionally, knowledge embeddings) in the processed-data layout
that the KAR authors' RS/ code reads: rerank.{train,test} (pickles of [uid, idx, candidates,
labels]), stat.json, sequential_data.json, item2attributes.json, datamaps.json and
{prefix}_augment.{hist,item} (JSON maps raw id -> vector).

    export_kar.py DATASET_DIR OUT_DIR [--users USERS.parquet --items ITEMS.parquet --prefix synth]

DATASET_DIR is a Dataset artifact (`dagrun show PIPELINE NODE --path`); USERS/ITEMS are the
table files of Embeddings artifacts (`dagrun show PIPELINE NODE.users --path`).
"""
import argparse
import json
import os
import pickle

import pyarrow.parquet as pq


def rows(path):
    return pq.read_table(path).to_pylist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("out")
    ap.add_argument("--users")
    ap.add_argument("--items")
    ap.add_argument("--prefix", default="synth")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    info = json.load(open(os.path.join(a.dataset, "dataset.json")))
    items = rows(os.path.join(a.dataset, "items.parquet"))
    users = rows(os.path.join(a.dataset, "users.parquet"))
    inter = rows(os.path.join(a.dataset, "interactions.parquet"))
    lists = rows(os.path.join(a.dataset, "lists.parquet"))

    seq = {}
    for x in inter:  # grouped by user, in time order
        s = seq.setdefault(str(x["user"]), [[], []])
        s[0].append(x["item"])
        s[1].append(int(round(x["rating"])))
    item2attr = {str(it["item"]): list(it["attribute_ids"]) for it in items}
    datamaps = {
        "id2item": {str(it["item"]): it["raw_id"] for it in items},
        "id2user": {str(u["user"]): u["raw_id"] for u in users},
    }
    for split in ("train", "test"):
        data = [[l["user"], l["start"], list(l["candidates"]), list(l["labels"])] for l in lists if l["split"] == split]
        with open(os.path.join(a.out, f"rerank.{split}"), "wb") as f:
            pickle.dump(data, f)
    dim = 0
    if a.users and a.items:
        uvec = {r["key"]: [float(v) for v in r["vector"]] for r in rows(a.users) if r.get("sample", 0) == 0}
        ivec = {r["key"]: [float(v) for v in r["vector"]] for r in rows(a.items)}
        dim = len(next(iter(uvec.values())))
        json.dump(uvec, open(os.path.join(a.out, f"{a.prefix}_augment.hist"), "w"))
        json.dump(ivec, open(os.path.join(a.out, f"{a.prefix}_augment.item"), "w"))
    stat = {
        "item_num": len(items),
        "attribute_num": info["attribute_count"],
        "attribute_ft_num": len(info["attribute_fields"]),
        "rating_num": 5,
        "dense_dim": dim,
        "rerank_list_len": info["settings"]["list_len"],
    }
    json.dump(stat, open(os.path.join(a.out, "stat.json"), "w"))
    json.dump(seq, open(os.path.join(a.out, "sequential_data.json"), "w"))
    json.dump(item2attr, open(os.path.join(a.out, "item2attributes.json"), "w"))
    json.dump(datamaps, open(os.path.join(a.out, "datamaps.json"), "w"))
    print(f"wrote {a.out}: {sum(1 for l in lists if l['split'] == 'train')} train / "
          f"{sum(1 for l in lists if l['split'] == 'test')} test lists, knowledge dim {dim}")


if __name__ == "__main__":
    main()
