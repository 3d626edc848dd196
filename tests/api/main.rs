//! Integration tests: the real service on port 0, over HTTP, on PostgreSQL and SQLite.

mod helpers;

mod auth_and_ops;
mod catalog_and_users;
mod connections;
mod crash;
mod hardening;
mod ingest;
mod models;
mod outage;
mod push_learning;
mod pushes;
mod recommendations;
mod refusals;
mod scale;
mod schemathesis;
