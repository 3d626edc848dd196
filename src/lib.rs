//! kairos: decides, for every shopper, what to push and when.
//!
//! The modules follow `DESIGN.md`: pure logic (`decay`, `profile`, `context`, `stats`,
//! `scoring`, `frequency`) takes plain data and a clock; I/O lives in `store`, `ingest`,
//! `api`, `scheduler` and `recommend`; `main.rs` only wires.
#![forbid(unsafe_code)]

/// HTTP routes, request/response types, problem+json errors.
pub mod api;
/// API keys with scopes, compared in constant time.
pub mod auth;
/// In-memory catalog index (items by id and by category) built from the store.
pub mod catalog;
/// The service clock: system time, or frozen by tests.
pub mod clock;
/// Settings (static) and Tuning (reloadable): layered loading, validation, hot reload.
pub mod config;
/// Context lift: how much each context raises each category, smoothed towards 1.
pub mod context;
/// Synthetic catalog/user/event generator for load tests.
pub mod datagen;
/// Demo: the service on the Taobao sample end to end, loaded over HTTP (`kairos demo`).
pub mod demo;
/// Time decay functions: exponential, sigmoid, linear, none.
pub mod decay;
/// Validated domain types: ids, events, items, users, context.
pub mod domain;
/// Offline evaluation: replays a real log through profile and scoring.
pub mod eval;
/// Push frequency policy: target frequency, feedback, hard limits, send time.
pub mod frequency;
/// Event ingest: validation and group commit.
pub mod ingest;
/// HTTP load generator (`kairos loadgen`).
pub mod loadgen;
/// Interest vectors from decayed events.
pub mod profile;
/// Recommendation service glue: caches of histories, catalog and stats over the store.
pub mod recommend;
/// Background push scheduler: claims due users, plans pushes into the outbox.
pub mod scheduler;
/// Candidate generation, scoring, filters, diversity and reasons.
pub mod scoring;
/// Push-policy simulation over real histories (`kairos simulate`).
pub mod simulate;
/// Application start-up and graceful shutdown.
pub mod startup;
/// Time-bucketed popularity, co-occurrence and context counts with bounded memory.
pub mod stats;
/// Field-by-field JSON reading with errors naming each field.
pub mod parse;
/// Storage trait with PostgreSQL and SQLite backends; all SQL lives here.
pub mod store;
/// Tracing and metrics set-up.
pub mod telemetry;
