//! Offline command-line tools over the same library code as the service. The service
//! (`api`, `engine`, `startup`, ...) never imports them.

/// Synthetic catalog/user/event generator for load tests.
pub mod datagen;
/// Demo: the service on the Taobao sample end to end, loaded over HTTP (`kairos demo`).
pub mod demo;
/// Offline evaluation: replays a real log through profile and scoring.
pub mod eval;
/// HTTP load generator (`kairos loadgen`).
pub mod loadgen;
/// Push-policy simulation over real histories (`kairos simulate`).
pub mod simulate;
/// Behaviour logs with a planted behaviour (`kairos synth`).
pub mod synth;
