//! Datasets: loaders for the real formats, the synthetic world, KAR preprocessing, and the
//! Parquet tables a `Dataset` artifact holds.

pub mod amazon;
pub mod export;
pub mod movielens;
pub mod preprocess;
pub mod raw;
pub mod synthetic;
pub mod tables;

pub use preprocess::{Dataset, Settings};
pub use raw::{DataError, Flavour, RawData};
