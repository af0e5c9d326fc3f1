//! Events from the bus become notifications: per preferences, through templates, once.
//!
//! By concern: `bus` (what depends on how events arrive: first sight, redelivery, streams out
//! of order; run on both buses), `preferences` (who hears what, on which channel, in which
//! provider's shape) and `payments` (held payments, review decisions, refunds).

mod bus;
mod payments;
mod preferences;

use platform_events::catalogue::OrderFacts;
use uuid::Uuid;

fn facts(user: Uuid) -> OrderFacts {
    OrderFacts {
        order_id: Uuid::now_v7(),
        user_id: user,
        total: 4999,
        currency: "EUR".to_owned(),
    }
}
