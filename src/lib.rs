//! kairos: decides, for every shopper, what to push and when.
//!
//! The folders follow the data flow of `DESIGN.md` (see `docs/ARCHITECTURE.md`):
//! - `api/`, `ingest`, `store/`, `engine`, `startup`: the service and its I/O;
//! - `rank/`: pure ranking (decay, catalog, profile, context, statistics, scoring);
//! - `push/`: the pure frequency policy (`push/frequency/`), the scheduler that runs it, and
//!   off-policy evaluation of push policies (`push/ope.rs`, pure);
//! - `tools/`: offline CLIs over the same library code (the service never imports them).
#![forbid(unsafe_code)]

/// HTTP routes, request/response types, problem+json errors.
pub mod api;
/// API keys with scopes, compared in constant time.
pub mod auth;
/// The service clock: system time, or frozen by tests.
pub mod clock;
/// Settings (static) and Tuning (reloadable): layered loading, validation, hot reload.
pub mod config;
/// Validated domain types: ids, events, items, users, context.
pub mod domain;
/// One replica's caches (histories, catalog, statistics) over the store, feeding `rank`.
pub mod engine;
/// Event ingest: validation and group commit.
pub mod ingest;
/// Field-by-field JSON reading with errors naming each field.
pub mod parse;
/// Push decisions: the pure frequency policy, the background scheduler, off-policy evaluation.
pub mod push;
/// Pure ranking: decay, catalog, interest profiles, context lift, statistics, scoring.
pub mod rank;
/// HTTP/1.1 serving with a connection cap, header-read and idle timeouts, graceful drain.
pub mod server;
/// Application start-up and graceful shutdown.
pub mod startup;
/// Storage trait with PostgreSQL and SQLite backends; all SQL lives here.
pub mod store;
/// Tracing and metrics set-up.
pub mod telemetry;
/// Offline tools: evaluation, simulation, demo, load generator, data generator.
pub mod tools;
