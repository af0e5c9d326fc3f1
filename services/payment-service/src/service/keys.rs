//! Idempotency keys: the one store that charges and refunds both keep their exactly-once
//! bookkeeping in, so that the two follow the same rules. A key is claimed in the transaction
//! that starts the work, a repeat is checked against the request that claimed it, and the
//! answer is recorded in the transaction that finishes the work (or the key is released when
//! nothing was done). What a repeat then gets is each use case's own business.

use std::fmt::Display;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use uuid::Uuid;

use super::PaymentError;
use crate::domain::{PaymentId, now};
use crate::repo::{self, KeyRow};
use crate::view::PaymentView;

/// A key whose request has not finished after this long is presumed abandoned (the process
/// died mid-request): a repeat takes it over and completes the payment.
pub(super) const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// The scope of a shopper's charge keys: one shopper's key is not another's.
pub(super) fn charge_scope(user: Uuid) -> String {
    format!("charge:{user}")
}

/// The scope of a payment's refund keys (`payment`: its id, as a [`PaymentId`] or a `Uuid`).
pub(super) fn refund_scope(payment: impl Display) -> String {
    format!("refund:{payment}")
}

/// The key's row, if a request under it was claimed already.
pub(super) async fn find(
    db: &DatabaseConnection,
    scope: &str,
    key: &str,
) -> Result<Option<KeyRow>, PaymentError> {
    Ok(repo::find_key(db, scope, key).await?)
}

/// Claims an idempotency key in a new write transaction. `Ok(txn)`: ours; go on inside
/// `txn`, which commits the claim with the work. `Err(row)`: a concurrent request with the
/// same key claimed it first (our transaction is rolled back): answer from its row.
pub(super) async fn claim(
    db: &DatabaseConnection,
    scope: &str,
    key: &str,
    request_hash: &str,
    id: PaymentId,
    at: DateTime<Utc>,
) -> Result<Result<DatabaseTransaction, KeyRow>, PaymentError> {
    let txn = platform_db::begin_write(db).await?;
    match repo::claim_key(&txn, scope, key, request_hash, id, at).await {
        Ok(()) => Ok(Ok(txn)),
        Err(error) if platform_db::is_unique_violation(&error) => {
            drop(txn);
            let row = find(db, scope, key)
                .await?
                .ok_or(PaymentError::KeyInProgress)?;
            Ok(Err(row))
        }
        Err(error) => Err(error.into()),
    }
}

/// A repeat must be the request that claimed the key: another one under it is refused.
pub(super) fn check_request(key: &KeyRow, request_hash: &str) -> Result<(), PaymentError> {
    if key.request_hash != request_hash {
        return Err(PaymentError::KeyReused);
    }
    Ok(())
}

/// Whether the request that claimed `key` has been at it for [`ABANDONED_AFTER`] or longer.
pub(super) fn abandoned(key: &KeyRow) -> bool {
    (now() - key.created_at).to_std().unwrap_or_default() >= ABANDONED_AFTER
}

/// Records `view` as the key's response, in `conn` (the transaction that finishes the work).
/// `false` when the key has one already: the first answer stands.
pub(super) async fn complete<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
    view: &PaymentView,
) -> Result<bool, PaymentError> {
    Ok(repo::complete_key(conn, scope, key, &serde_json::to_string(view)?).await?)
}

/// Forgets the key, in `conn`, so that it may be used again: for a request that did nothing.
pub(super) async fn release<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
) -> Result<(), PaymentError> {
    Ok(repo::release_key(conn, scope, key).await?)
}

#[cfg(test)]
mod tests {
    use platform_http::fingerprint;

    #[test]
    fn request_hashes_separate_their_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["x"]), fingerprint(&["x"]));
        assert_eq!(fingerprint(&["x"]).len(), 64);
    }
}
