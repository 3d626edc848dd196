//! The service's clock: the system clock, or a fixed time set by tests so that the
//! scheduler, the gateway and validation can be driven step by step over HTTP.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Clone, Default)]
pub struct Clock {
    fixed: Arc<RwLock<Option<DateTime<Utc>>>>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.read().expect("clock lock").unwrap_or_else(Utc::now)
    }

    /// Freezes the clock at `t` (tests).
    pub fn set(&self, t: DateTime<Utc>) {
        *self.fixed.write().expect("clock lock") = Some(t);
    }

    /// Moves a frozen clock forward (freezing it at now first if it was running).
    pub fn advance(&self, by: TimeDelta) {
        let t = self.now() + by;
        self.set(t);
    }
}
