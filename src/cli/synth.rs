//! `dagrun synth`: write a synthetic world in a real dataset's file format.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use dagrun_nodes::data::export::{export, Format};
use dagrun_nodes::data::synthetic::{generate, WorldSettings};
use dagrun_nodes::data::Flavour;

use super::util::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// movielens-1m, movielens-100k or amazon-books.
    #[arg(long)]
    pub format: String,
    /// The directory to write the files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 300)]
    pub users: u32,
    #[arg(long, default_value_t = 400)]
    pub items: u32,
    /// Mean ratings per user.
    #[arg(long, default_value_t = 40)]
    pub ratings_per_user: u32,
    /// Minimum ratings per user.
    #[arg(long, default_value_t = 20)]
    pub min_ratings: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn synth(a: SynthArgs) -> CliResult {
    let format: Format = a.format.parse().map_err(CliError::Usage)?;
    let flavour = if format == Format::AmazonBooks { Flavour::Books } else { Flavour::Movies };
    let mut w = WorldSettings::new(flavour);
    w.users = a.users;
    w.items = a.items;
    w.ratings_per_user = a.ratings_per_user;
    w.min_ratings = a.min_ratings;
    let t = Instant::now();
    let raw = generate(&w, a.seed).map_err(|e| CliError::Usage(e.to_string()))?;
    let files = export(&raw, format, &a.out).map_err(|e| CliError::Failed(e.into()))?;
    eprintln!(
        "wrote {} users, {} items, {} ratings as {} to {} ({}) in {:.2} s",
        raw.users.len(),
        raw.items.len(),
        raw.ratings.len(),
        a.format,
        a.out.display(),
        files.join(", "),
        t.elapsed().as_secs_f64()
    );
    Ok(0)
}
