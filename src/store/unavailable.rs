//! Which store errors are an outage (answered 503 with Retry-After) rather than a fault.

use super::StoreError;

impl StoreError {
    /// The store cannot be reached or has no connection to give (it is down, restarting,
    /// overloaded or closed): a fault of neither the request nor the data, which a retry
    /// may outlive. The API answers 503 with Retry-After for these, 500 for the others.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => sqlx_unavailable(e),
            StoreError::Migrate(_) | StoreError::Corrupt(_) => false,
        }
    }
}

fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
            true
        }
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // Class 08: connection exception; 57P01..57P03: the server is shutting down,
                // crashed or not accepting connections yet; 53300: too many connections;
                // 3D000: the database is gone.
                let code = pg.code();
                code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "3D000")
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // The primary result code is the low byte of the extended one: SQLITE_BUSY (5),
                // SQLITE_LOCKED (6), SQLITE_IOERR (10), SQLITE_CANTOPEN (14).
                let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
                matches!(primary, Some(5 | 6 | 10 | 14))
            } else {
                false
            }
        }
        // Every other error (a constraint, a decoding fault, a bad query) is not an outage;
        // `sqlx::Error` is non-exhaustive, so new kinds land here too.
        _ => false,
    }
}
