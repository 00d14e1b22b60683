//! Tensor layout helpers shared by the transformer models, written for Flex: it copies
//! contiguous 2-D blocks fast but walks general 4-D permutations element by element.

use burn::prelude::*;

/// [b · s, heads · hd] token rows → [b, heads, s, hd]. One new token per row is a free
/// reshape; longer inputs copy head by head (contiguous 2-D copies, never a strided walk).
pub fn head_major<B: Backend>(x: Tensor<B, 2>, b: usize, s: usize, heads: usize, hd: usize) -> Tensor<B, 4> {
    if s == 1 {
        return x.reshape([b, heads, 1, hd]);
    }
    if heads == 1 {
        return x.reshape([b, 1, s, hd]);
    }
    Tensor::cat((0..heads).map(|i| x.clone().narrow(1, i * hd, hd).reshape([b, 1, s, hd])).collect(), 1)
}

/// [b, heads, s, hd] → [b · s, heads · hd], the inverse of `head_major`.
pub fn token_major<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, heads, s, hd] = x.dims();
    if s == 1 || heads == 1 {
        return x.reshape([b * s, heads * hd]);
    }
    Tensor::cat((0..heads).map(|i| x.clone().narrow(1, i, 1).reshape([b * s, hd])).collect(), 1)
}
