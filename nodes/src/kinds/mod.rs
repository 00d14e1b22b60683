//! The node kinds users name in `kind:`.

pub mod dpo;
pub mod encode;
pub mod evaluate;
pub mod pair_select;
pub mod generate;
pub mod load;
pub mod prompt;
pub mod reward_score;
pub mod synthetic_knowledge;
pub mod taste_match;
pub mod train_reranker;
