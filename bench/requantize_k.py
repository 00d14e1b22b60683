#!/usr/bin/env python3
"""Rewrites a Llama GGUF with its matrices as llama.cpp's `Q4_K_M` stores them (Q4_K, with
Q6_K for the output head and for attn_v and ffn_down in some layers; Q5_0 and Q8_0 where rows
are not whole 256-value blocks, as in SmolLM2-135M), for benchmarking and checking dagrun's
block-coded path where llama.cpp's own quantiser is not at hand.

    python3 bench/requantize_k.py IN.gguf OUT.gguf

Needs numpy and gguf. Every tensor is read back to f32 with the gguf package, so the input may
be any type it reads (SmolLM2's Q4_1, say); the K-quants are made by simple per-sub-block
min/max rounding (not llama.cpp's error-minimising search, so somewhat less accurate; Q5_0 and
Q8_0 by the gguf package), and each tensor written is decoded again with the gguf package and
its error printed.
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def quantize_q4_k(x):
    """[blocks, 256] f32 -> [blocks, 144] u8. value = (d*sc)*q - dmin*m, q in 0..15."""
    n = x.shape[0]
    sub = x.reshape(n, 8, 32)
    lo = np.minimum(sub.min(axis=2), 0.0)
    hi = sub.max(axis=2)
    scale = (hi - lo) / 15.0
    mins = -lo
    d = f16(scale.max(axis=1) / 63.0)
    dmin = f16(mins.max(axis=1) / 63.0)
    df, dminf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.rint(scale / df), 0).clip(0, 63).astype(np.uint8)
        m = np.where(dminf > 0, np.rint(mins / dminf), 0).clip(0, 63).astype(np.uint8)
        s = (df * sc)[:, :, None]
        mm = (dminf * m)[:, :, None]
        q = np.where(s > 0, np.rint((sub + mm) / s), 0).clip(0, 15).astype(np.uint8)
    scales = np.zeros((n, 12), dtype=np.uint8)
    scales[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((m[:, 4:8] & 0x0F) << 4)
    # Sub-blocks 2c and 2c+1 share bytes 32c..32c+32 (low and high nibbles).
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(n, 128)
    return np.concatenate([d.view(np.uint8).reshape(n, 2), dmin.view(np.uint8).reshape(n, 2), scales, qs], axis=1)


def quantize_q6_k(x):
    """[blocks, 256] f32 -> [blocks, 210] u8. value = (d*sc)*(q - 32), sc int8, q in 0..63."""
    n = x.shape[0]
    sub = x.reshape(n, 16, 16)
    amax = np.abs(sub).max(axis=2)
    scale = amax / 31.0
    d = f16(scale.max(axis=1) / 127.0)
    df = d.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.rint(scale / df), 0).clip(-128, 127).astype(np.int8)
        s = (df * sc)[:, :, None]
        q = (np.where(s != 0, np.rint(sub / s), 0).clip(-32, 31) + 32).astype(np.uint8).reshape(n, 256)
    ql = np.zeros((n, 128), dtype=np.uint8)
    qh = np.zeros((n, 64), dtype=np.uint8)
    for half in range(2):
        for e in range(128):
            l, group = e % 32, e // 32
            v = q[:, half * 128 + e]
            ql[:, half * 64 + l + 32 * (group & 1)] |= (v & 0x0F) << (4 * (group >> 1))
            qh[:, half * 32 + l] |= (v >> 4) << (2 * group)
    return np.concatenate([ql, qh, sc.view(np.uint8), d.view(np.uint8).reshape(n, 2)], axis=1)


QUANTIZERS = {T.Q4_K: quantize_q4_k, T.Q6_K: quantize_q6_k}


def more_bits(layer, layers):
    """The layers whose attn_v and ffn_down llama.cpp's Q4_K_M stores as Q6_K."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def target_type(name, shape, layers, tied):
    """Q4_K_M's choice (as llama.cpp's llama_tensor_get_type makes it, roughly), with its
    fallbacks for rows that are not whole 256-value blocks: Q6_K -> Q8_0, Q4_K -> Q5_0."""
    if len(shape) != 2:
        return None
    parts = name.split(".")
    layer = int(parts[1]) if parts[0] == "blk" else None
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        ty = T.Q6_K
    elif layer is not None and parts[2] in ("attn_v", "ffn_down") and more_bits(layer, layers):
        ty = T.Q6_K
    else:
        ty = T.Q4_K
    if shape[-1] % 256 != 0:
        ty = {T.Q6_K: T.Q8_0, T.Q4_K: T.Q5_0}[ty]
    return ty


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    reader = gguf.GGUFReader(sys.argv[1])
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(sys.argv[2], arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), vtype, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), vtype)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    layers = int(reader.fields[f"{arch}.block_count"].contents())
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    for t in reader.tensors:
        shape = [int(s) for s in reversed(t.shape)]  # PyTorch order: rows, then row length
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        ty = target_type(t.name, shape, layers, tied)
        if ty is None:
            writer.add_tensor(t.name, values, raw_dtype=T.F32)
            continue
        if ty in QUANTIZERS:
            raw = QUANTIZERS[ty](values.reshape(-1, 256))
        else:
            raw = gguf.quants.quantize(values, ty).reshape(-1)
        back = gguf.quants.dequantize(raw, ty).reshape(shape)
        err = float(np.sqrt(np.mean((back - values) ** 2)) / (np.sqrt(np.mean(values**2)) + 1e-12))
        print(f"{t.name:32} {t.tensor_type.name:>5} -> {ty.name}  relative RMS error {err:.4f}")
        writer.add_tensor(t.name, raw.reshape(shape[0], -1), raw_shape=raw.reshape(shape[0], -1).shape, raw_dtype=ty)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
