//! The request path's check: each thread keeps its own copy of the table and takes a fresh
//! one only when the store's generation has moved, so `is_revoked` takes no lock that
//! writers hold and, with nothing revoked, is a single atomic load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::table::lock;
use super::{Revocations, Table, now_ms};
use crate::{TokenVersion, UserId};

thread_local! {
    /// Per store (by instance), the generation and table this thread last read.
    static SNAPSHOTS: RefCell<HashMap<u64, (u64, Arc<Table>)>> = RefCell::new(HashMap::new());
}

impl Revocations {
    /// Whether `user`'s token of `version` is revoked. Synchronous and lock-free in the
    /// common case: the request path calls it for every authenticated request.
    pub fn is_revoked(&self, user: UserId, version: TokenVersion) -> bool {
        let inner = &*self.inner;
        if inner.live.load(Ordering::Acquire) == 0 {
            return false;
        }
        let generation = inner.generation.load(Ordering::Acquire);
        let entry = SNAPSHOTS.with(|snapshots| {
            let mut snapshots = snapshots.borrow_mut();
            let snapshot = snapshots
                .entry(inner.instance)
                .or_insert_with(|| (u64::MAX, Arc::default()));
            if snapshot.0 != generation {
                *snapshot = (generation, Arc::clone(&lock(&inner.table)));
            }
            snapshot.1.get(&user).copied()
        });
        entry.is_some_and(|entry| version.get() < entry.min && now_ms() < entry.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::tests::MINUTE;

    #[tokio::test]
    async fn every_thread_sees_a_revocation_made_on_another() {
        let store = Revocations::isolated();
        let user = UserId::generate();
        // A thread that has read (and cached) the table before the revocation.
        let reader = store.clone();
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (answer, answered) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            while asked.recv().is_ok() {
                let _ = answer.send(reader.is_revoked(user, TokenVersion::new(0)));
            }
        });
        store
            .revoke(UserId::generate(), TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        ask.send(()).unwrap();
        assert!(!answered.recv().unwrap());
        store
            .revoke(user, TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        ask.send(()).unwrap();
        assert!(answered.recv().unwrap());
        drop(ask);
        thread.join().unwrap();
    }
}
