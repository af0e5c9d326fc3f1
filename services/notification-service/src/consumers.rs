//! The events this service consumes: each becomes the notifications its plan says, to the
//! users it concerns (see `service::events`).

use platform_events::catalogue::{
    InventoryLow, OrderConfirmed, OrderFailed, OrderShipped, PaymentRefunded, PaymentReviewDecided,
    PaymentReviewRequested, UserDeleted, UserRegistered,
};
use platform_events::{Consumer, Envelope, Event, HandlerError};

use crate::service::Notifications;

/// The event types this service acts on.
const HANDLED: &[&str] = &[
    UserRegistered::TYPE,
    UserDeleted::TYPE,
    OrderConfirmed::TYPE,
    OrderFailed::TYPE,
    OrderShipped::TYPE,
    PaymentRefunded::TYPE,
    PaymentReviewRequested::TYPE,
    PaymentReviewDecided::TYPE,
    InventoryLow::TYPE,
];

/// `consumer` with a handler for each event type this service acts on.
pub fn notify_on_events(mut consumer: Consumer, notifications: &Notifications) -> Consumer {
    for event_type in HANDLED {
        let notifications = notifications.clone();
        consumer = consumer.on(event_type, move |envelope: Envelope| {
            let notifications = notifications.clone();
            async move {
                notifications
                    .handle_event(&envelope)
                    .await
                    .map_err(HandlerError::from)
            }
        });
    }
    consumer
}
