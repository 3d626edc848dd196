//! Push decisions: `frequency/` is the pure policy (state, target frequency, hard limits,
//! send time); `scheduler` claims due users from the store and commits the policy's plans;
//! `ope` (pure) estimates a new policy's value from logged decisions before it is switched on.

/// Push frequency policy: target frequency, feedback, hard limits, send time.
pub mod frequency;
/// Background push scheduler: claims due users, plans pushes into the outbox.
pub mod scheduler;
/// Off-policy evaluation: IPS, self-normalised IPS and doubly robust estimates of a target
/// policy's value from logged decisions, with intervals and diagnostics.
pub mod ope;
