//! Models in Burn, generic over the backend (Flex on the CPU, CUDA with the `cuda` feature).

pub mod backend;
pub mod cpu;
pub mod encoder;
pub mod init;
pub mod llm;
pub mod mapped;
pub mod ops;
pub mod rerank;
pub mod source;
pub mod tensors;

/// Names for an error message, each in backticks: "`a`, `b` and `c`" (`conjunction` "and").
pub(crate) fn listed<'a>(names: impl IntoIterator<Item = &'a str>, conjunction: &str) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} {conjunction} {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// The middle value of benchmark timings (the upper one of the two middles for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
