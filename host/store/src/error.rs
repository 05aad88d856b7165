//! What can go wrong in the store.

use gigaspot_market::admission::Refusal;
use gigaspot_market::ledger::{AuditError, LedgerError};
use thiserror::Error;

/// A store operation that did not happen. Nothing was written when one is returned.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The storage engine failed (disk full, I/O error...).
    #[error("storage failure: {0}")]
    Backend(String),
    /// The store was closed (the service is stopping).
    #[error("the store is closed")]
    Closed,
    /// The database cannot be read as a GigaSPOT database; it is left untouched.
    #[error(
        "the database at {path} is corrupt or not a GigaSPOT database ({detail}); it was left untouched"
    )]
    Corrupt {
        /// Where the database is.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The database was written by a newer GigaSPOT; it is left untouched.
    #[error(
        "the database at {path} has schema version {found}, newer than the {supported} this \
         build understands; run a newer gigaspot (the database was left untouched)"
    )]
    NewerSchema {
        /// Where the database is.
        path: String,
        /// Its schema version.
        found: u32,
        /// The newest this build understands.
        supported: u32,
    },
    /// The object does not exist.
    #[error("no {what} {id}")]
    NotFound {
        /// What kind of object.
        what: &'static str,
        /// Its id.
        id: u64,
    },
    /// The account may not do this.
    #[error("account {account} may not {action}")]
    Forbidden {
        /// The acting account.
        account: u64,
        /// What it tried.
        action: &'static str,
    },
    /// A bid broke an admission rule.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// A transfer could not be booked.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    /// A field named at run time (e.g. `models[2]`) has an unusable value.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A field has an unusable value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A backup could not be made or restored.
    #[error("backup: {0}")]
    Backup(String),
    /// This replica no longer holds the clearer's lease it cleared under: another
    /// replica took it over, and nothing of the tick was written.
    #[error(
        "{holder} no longer holds the clearer's lease (epoch {epoch}); another replica clears now and nothing was written"
    )]
    Fenced {
        /// The holder name this replica cleared under.
        holder: String,
        /// The epoch it was given.
        epoch: u64,
    },
    /// The ledger audit failed: billing stops until an operator has looked.
    #[error("ledger audit failed, billing is stopped: {0}")]
    Audit(#[from] AuditError),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Results of store operations.
pub type StoreResult<T> = Result<T, StoreError>;
