//! dagrun's node kinds. The binary calls [`registry`] to get every kind a user can name in
//! `kind:`.

use dagrun_engine::Registry;

pub mod data;
pub mod kinds;
pub mod knowledge;
pub mod metrics;
pub mod models;
pub mod prompts;
pub mod types;

#[cfg(feature = "test-kinds")]
pub mod testing;

/// Every node kind this build offers.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(kinds::load::Load);
    r.register(kinds::prompt::Prompt);
    r.register(kinds::generate::Generate);
    r.register(kinds::encode::Encode);
    r.register(kinds::reward_score::RewardScore);
    r.register(kinds::pair_select::PairSelect);
    r.register(kinds::dpo::Dpo);
    r.register(kinds::taste_match::TasteMatch);
    r.register(kinds::evaluate::Evaluate);
    r.register(kinds::train_reranker::TrainReranker);
    r.register(kinds::synthetic_knowledge::SyntheticKnowledge);
    #[cfg(feature = "test-kinds")]
    testing::register(&mut r);
    r
}
