//! L1: the in-process layer (moka), each entry with a TTL drawn with jitter so that one
//! popular page does not expire on every replica at once.

use super::*;

/// An L1 entry: the value and the TTL drawn for it (read by [`PerEntryTtl`]).
#[derive(Clone)]
pub(super) struct Slot<V> {
    pub(super) value: V,
    pub(super) ttl: Duration,
}

pub(super) struct PerEntryTtl;

impl<V> Expiry<String, Slot<V>> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, slot: &Slot<V>, _: Instant) -> Option<Duration> {
        Some(slot.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        slot: &Slot<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }
}

/// `ttl` scaled into `[ttl·(1-jitter), ttl·(1+jitter)]` by `unit` in `0..=1` (0 → low end).
pub(crate) fn jittered(ttl: Duration, jitter: f64, unit: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 - jitter + 2.0 * jitter * unit;
    Duration::try_from_secs_f64(ttl.as_secs_f64() * factor).unwrap_or(ttl)
}

impl<V> Inner<V>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub(super) fn draw_ttl(&self) -> Duration {
        jittered(self.ttl, self.jitter, rand::random_range(0.0..=1.0)).max(MIN_TTL)
    }

    pub(super) async fn forget_local(&self, key: &str) {
        self.epochs.bump(key);
        self.l1.invalidate(key).await;
    }

    pub(super) fn forget_local_all(&self) {
        self.epochs.bump_all();
        self.l1.invalidate_all();
    }
}
