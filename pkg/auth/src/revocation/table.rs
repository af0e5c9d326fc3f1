//! The table of live revocations every store answers from, and the in-process store that is
//! nothing more: merging only ever raises a user's minimum and extends its expiry, so
//! revocations arriving twice or out of order (a reload racing a message) are harmless.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use super::{Entry, Inner, Revocations, Table, now_ms};
use crate::{TokenVersion, UserId};

static IN_PROCESS: LazyLock<Revocations> = LazyLock::new(|| Revocations::build(None));

impl Revocations {
    /// The process's own store: every caller gets the same one, so the services and the
    /// gateway of one process (`platform up`, tests) share their revocations.
    pub fn in_process() -> Self {
        IN_PROCESS.clone()
    }

    /// A store of its own, shared with nobody (unit tests).
    pub fn isolated() -> Self {
        Self::build(None)
    }

    /// The lowest version `user`'s tokens may have now (0 when nothing is revoked): issuers
    /// never sign below it, even if their database has not caught up.
    pub fn min_version(&self, user: UserId) -> TokenVersion {
        let table = Arc::clone(&lock(&self.inner.table));
        let min = table
            .get(&user)
            .filter(|entry| now_ms() < entry.until)
            .map_or(0, |entry| entry.min);
        TokenVersion::new(min)
    }
}

pub(super) fn lock(table: &Mutex<Arc<Table>>) -> MutexGuard<'_, Arc<Table>> {
    // The table is replaced whole under the lock: a panic elsewhere cannot leave it torn.
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Merges `entries` (the higher version, the later expiry), dropping expired ones.
    pub(super) fn apply(&self, entries: impl IntoIterator<Item = (UserId, Entry)>) {
        let now = now_ms();
        let mut table = lock(&self.table);
        let mut next: Option<Table> = None;
        for (user, entry) in entries {
            let known = next.as_ref().unwrap_or(&table).get(&user).copied();
            if entry.until <= now
                || known.is_some_and(|k| k.min >= entry.min && k.until >= entry.until)
            {
                continue;
            }
            let next = next.get_or_insert_with(|| {
                let mut copy = Table::clone(&table);
                copy.retain(|_, e| e.until > now);
                copy
            });
            let slot = next.entry(user).or_insert(entry);
            slot.min = slot.min.max(entry.min);
            slot.until = slot.until.max(entry.until);
        }
        let Some(next) = next else {
            return;
        };
        self.live.store(next.len(), Ordering::Release);
        *table = Arc::new(next);
        drop(table);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changes.send_replace(generation);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::revocation::tests::MINUTE;

    #[tokio::test]
    async fn tokens_below_the_revoked_version_are_refused_and_others_are_not() {
        let store = Revocations::isolated();
        let (user, other) = (UserId::generate(), UserId::generate());
        assert!(!store.is_revoked(user, TokenVersion::new(0)));
        store
            .revoke(user, TokenVersion::new(2), MINUTE)
            .await
            .unwrap();
        assert!(store.is_revoked(user, TokenVersion::new(0)));
        assert!(store.is_revoked(user, TokenVersion::new(1)));
        assert!(!store.is_revoked(user, TokenVersion::new(2)));
        assert!(!store.is_revoked(other, TokenVersion::new(0)));
        assert_eq!(store.min_version(user), TokenVersion::new(2));
        assert_eq!(store.min_version(other), TokenVersion::new(0));
    }

    #[tokio::test]
    async fn a_revocation_never_lowers_the_minimum_version() {
        let store = Revocations::isolated();
        let user = UserId::generate();
        store
            .revoke(user, TokenVersion::new(5), MINUTE)
            .await
            .unwrap();
        store
            .revoke(user, TokenVersion::new(3), MINUTE)
            .await
            .unwrap();
        assert!(store.is_revoked(user, TokenVersion::new(4)));
        assert_eq!(store.min_version(user), TokenVersion::new(5));
    }

    #[tokio::test]
    async fn revocations_expire_with_their_ttl() {
        let store = Revocations::isolated();
        let user = UserId::generate();
        store
            .revoke(user, TokenVersion::new(1), Duration::from_millis(50))
            .await
            .unwrap();
        assert!(store.is_revoked(user, TokenVersion::new(0)));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!store.is_revoked(user, TokenVersion::new(0)));
        // The next change prunes it.
        store
            .revoke(UserId::generate(), TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        assert_eq!(store.inner.live.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn the_in_process_store_is_one_per_process() {
        let user = UserId::generate();
        Revocations::in_process()
            .revoke(user, TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        assert!(Revocations::in_process().is_revoked(user, TokenVersion::new(0)));
        assert!(!Revocations::isolated().is_revoked(user, TokenVersion::new(0)));
    }
}
