//! `prompt`: one chat prompt per user (KAR's user-preference prompt) or per item (KAR's
//! item-fact prompt), from a built-in template or a custom minijinja one.

use std::sync::Arc;

use arrow_array::{Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::preprocess::Split;
use crate::data::{tables, Flavour};
use crate::prompts::{self, BOOK_FACTS, BOOK_PREFERENCE, MOVIE_FACTS, MOVIE_PREFERENCE};
use crate::types::{DATASET, PROMPTS};

/// Which prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// KAR's user-preference prompt for the dataset's flavour.
    Preference,
    /// KAR's item-fact prompt for the dataset's flavour.
    Facts,
    MoviePreference,
    BookPreference,
    MovieFacts,
    BookFacts,
    /// Your own: `prompt:` (and optionally `system:`) as minijinja templates.
    Custom,
}

/// Whom a custom template is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Users,
    Items,
}

/// Which users get prompts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SplitFilter {
    All,
    Train,
    Test,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptParams {
    /// preference | facts | movie-preference | book-preference | movie-facts | book-facts | custom
    #[serde(default = "preference")]
    pub template: Template,
    /// With `template: custom`: the user message, a minijinja template.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A system message (a minijinja template), for any template; none by default, as in KAR.
    #[serde(default)]
    pub system: Option<String>,
    /// With `template: custom`: users (default) or items.
    #[serde(default)]
    pub subject: Option<Subject>,
    /// Which users: all (default), train or test.
    #[serde(default = "all")]
    pub split: SplitFilter,
}

fn preference() -> Template {
    Template::Preference
}

fn all() -> SplitFilter {
    SplitFilter::All
}

impl PromptParams {
    fn subject(&self) -> Subject {
        match self.template {
            Template::Facts | Template::MovieFacts | Template::BookFacts => Subject::Items,
            Template::Custom => self.subject.unwrap_or(Subject::Users),
            _ => Subject::Users,
        }
    }

    fn source(&self, flavour: Flavour) -> String {
        let movies = flavour == Flavour::Movies;
        match self.template {
            Template::Preference if movies => MOVIE_PREFERENCE.into(),
            Template::Preference => BOOK_PREFERENCE.into(),
            Template::Facts if movies => MOVIE_FACTS.into(),
            Template::Facts => BOOK_FACTS.into(),
            Template::MoviePreference => MOVIE_PREFERENCE.into(),
            Template::BookPreference => BOOK_PREFERENCE.into(),
            Template::MovieFacts => MOVIE_FACTS.into(),
            Template::BookFacts => BOOK_FACTS.into(),
            Template::Custom => self.prompt.clone().unwrap_or_default(),
        }
    }
}

/// The `prompt` kind.
pub struct Prompt;

impl Kind for Prompt {
    type Params = PromptParams;

    fn name(&self) -> &'static str {
        "prompt"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "KAR's user-preference or item-fact chat prompts, or your own minijinja template"
    }
    fn seeded(&self, _p: &PromptParams) -> bool {
        false
    }

    fn signature(&self, p: &PromptParams) -> Result<Signature, ParamError> {
        match (p.template, &p.prompt) {
            (Template::Custom, None) => return Err(ParamError::field("template", "`template: custom` needs `prompt:` (a minijinja template)")),
            (Template::Custom, Some(t)) => prompts::check_template(t).map_err(|e| ParamError::field("prompt", e))?,
            (_, Some(_)) => return Err(ParamError::field("prompt", "`prompt:` is only for `template: custom`")),
            _ => {}
        }
        if p.subject.is_some() && p.template != Template::Custom {
            return Err(ParamError::field("subject", "`subject:` is only for `template: custom` (the built-in templates know theirs)"));
        }
        if let Some(s) = &p.system {
            prompts::check_template(s).map_err(|e| ParamError::field("system", e))?;
        }
        Ok(Signature { inputs: vec![Port::new("data", DATASET)], outputs: vec![Port::new("prompts", PROMPTS)] })
    }

    fn run(&self, p: &PromptParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let d = tables::read(inputs, "data")?;
        let env = prompts::environment();
        let source = p.source(d.flavour);
        let tmpl = env.template_from_str(&source).map_err(|e| prompts::describe(&e))?;
        let system = p.system.as_deref().map(|s| env.template_from_str(s)).transpose().map_err(|e| prompts::describe(&e))?;
        let (mut ids, mut keys, mut systems, mut texts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let render = |c: &minijinja::Value, what: &str| -> Result<(String, Option<String>), BoxError> {
            let text = tmpl.render(c).map_err(|e| format!("{what}: {}", prompts::describe(&e)))?;
            let sys = system.as_ref().map(|s| s.render(c)).transpose().map_err(|e| format!("{what}: system: {}", prompts::describe(&e)))?;
            Ok((text, sys))
        };
        match p.subject() {
            Subject::Users => {
                let seqs = d.sequences();
                ctx.progress().start(Some(d.users.len() as u64), "users");
                for u in &d.users {
                    let keep = match p.split {
                        SplitFilter::All => true,
                        SplitFilter::Train => u.split == Split::Train,
                        SplitFilter::Test => u.split == Split::Test,
                    };
                    if keep {
                        let c = prompts::user_context(&d, u, seqs[(u.id - 1) as usize]);
                        let (text, sys) = render(&c, &format!("user {}", u.raw_id))?;
                        ids.push(u.id);
                        keys.push(u.raw_id.clone());
                        systems.push(sys);
                        texts.push(text);
                    }
                    ctx.progress().inc(1);
                }
            }
            Subject::Items => {
                ctx.progress().start(Some(d.items.len() as u64), "items");
                for it in d.items.iter().filter(|i| i.has_meta) {
                    let c = prompts::item_context(&d, it);
                    let (text, sys) = render(&c, &format!("item {}", it.raw_id))?;
                    ids.push(it.id);
                    keys.push(it.raw_id.clone());
                    systems.push(sys);
                    texts.push(text);
                    ctx.progress().inc(1);
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("system", DataType::Utf8, true),
            Field::new("prompt", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(ids)),
                Arc::new(StringArray::from(keys)),
                Arc::new(StringArray::from(systems)),
                Arc::new(StringArray::from(texts)),
            ],
        )?;
        ctx.write_batch("prompts", &batch)?;
        Ok(())
    }
}
