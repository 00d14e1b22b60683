//! dagrun's node kinds. The binary calls [`registry`] to get every kind a user can name in
//! `kind:`.

use dagrun_engine::Registry;

#[cfg(feature = "test-kinds")]
pub mod testing;

pub mod data;
pub mod metrics;

/// Every node kind this build offers.
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut r = Registry::new();
    #[cfg(feature = "test-kinds")]
    testing::register(&mut r);
    r
}
