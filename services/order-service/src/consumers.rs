//! The events this service consumes: the payment service's refunds (an order's refunded
//! total follows its payments) and captures (a charge that completed after its saga gave up
//! is repaired).

use platform_events::catalogue::{PaymentCaptured, PaymentRefunded};
use platform_events::{Consumer, Envelope, Event, HandlerError};

use crate::service::Orders;

/// `consumer` (of the group `group`) with this service's handlers of payment events.
pub fn payment_events(consumer: Consumer, orders: &Orders, group: String) -> Consumer {
    let on_refund = orders.clone();
    let on_capture = orders.clone();
    consumer
        .on(PaymentRefunded::TYPE, move |envelope: Envelope| {
            let orders = on_refund.clone();
            let group = group.clone();
            async move {
                let Some(refund) = envelope.decode::<PaymentRefunded>() else {
                    return Ok(());
                };
                orders
                    .apply_refund(&group, envelope.id, &refund?)
                    .await
                    .map_err(HandlerError::from)
            }
        })
        .on(PaymentCaptured::TYPE, move |envelope: Envelope| {
            let orders = on_capture.clone();
            async move {
                let Some(captured) = envelope.decode::<PaymentCaptured>() else {
                    return Ok(());
                };
                orders
                    .repair_late_capture(&captured?)
                    .await
                    .map(|_| ())
                    .map_err(HandlerError::from)
            }
        })
}
