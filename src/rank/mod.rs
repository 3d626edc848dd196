//! Pure ranking: everything here takes plain data and `now`, and touches no I/O, no tokio
//! and no database (a test in `tests/layout.rs` keeps it so).

/// In-memory catalog index (items by id and by category) built from the store.
pub mod catalog;
/// Context lift: how much each context raises each category, smoothed towards 1.
pub mod context;
/// Time decay functions: exponential, sigmoid, linear, none.
pub mod decay;
/// The signals of a (user, candidate, context): hand-set parts and learned features.
pub mod features;
/// Learning the ranker from the log: examples, the trainer, the deployment rule.
pub mod learn;
/// A user's history as ranking reads it: full events, or the 16-byte packed form the service caches.
pub mod history;
/// Interest vectors from decayed events.
pub mod profile;
/// The learned ranker: a linear model over standardised features, stored as data.
pub mod ranker;
/// Candidate generation, scoring, filters, diversity and reasons.
pub mod scoring;
/// The sequence model: self-attention over a shopper's last events, trained with sampled softmax.
pub mod sequence;
/// Time-bucketed counts decayed at query time (under stats and context).
pub mod buckets;
/// Time-bucketed popularity, co-occurrence and context counts with bounded memory.
pub mod stats;
