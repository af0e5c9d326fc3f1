//! Every event the platform emits, with its payload. Adding an event means adding it here.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every event family (the part of a type before the dot); one stream each. A consumer of
/// everything, such as the event store, subscribes to all of them. `audit` carries audit
/// records (type `audit.<action>` for each `platform_audit::Action`, data an `AuditRecord`;
/// see [`crate::audit`]), which have no payload type here.
pub const FAMILIES: &[&str] = &["user", "product", "inventory", "payment", "order", "audit"];

/// A typed event payload.
pub trait Event: Serialize + DeserializeOwned {
    /// The CloudEvents `type`, `<aggregate>.<past-tense verb>`.
    const TYPE: &'static str;
    /// Bumped on any incompatible change of the payload.
    const SCHEMA_VERSION: u32;
    /// The aggregate's id: events of one subject are delivered in order.
    fn subject(&self) -> String;
}

/// `event!(Payload, "type", schema_version, subject_field)`: the payload's [`Event`]
/// implementation, its subject being that field.
macro_rules! event {
    ($payload:ty, $type:literal, $version:literal, $subject:ident) => {
        impl Event for $payload {
            const TYPE: &'static str = $type;
            const SCHEMA_VERSION: u32 = $version;
            fn subject(&self) -> String {
                self.$subject.to_string()
            }
        }
    };
}

/// A user account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// The new account's id; the subject.
    pub user_id: Uuid,
    /// The address, trimmed and lower-cased.
    pub email: String,
    /// The display name.
    pub name: String,
    /// `user` or `admin`.
    pub role: String,
}

event!(UserRegistered, "user.registered", 1, user_id);

/// A user's profile or password changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// The account's id; the subject.
    pub user_id: Uuid,
    /// The display name after the change.
    pub name: String,
    /// Which fields changed: `name`, `password`.
    pub changed: Vec<String>,
}

event!(UserUpdated, "user.updated", 1, user_id);

/// A user account was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    /// The deleted account's id; the subject.
    pub user_id: Uuid,
}

event!(UserDeleted, "user.deleted", 1, user_id);

/// A product was added to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCreated {
    /// The new product's id; the subject.
    pub product_id: Uuid,
    /// The stock-keeping unit, unique in the catalog.
    pub sku: String,
    /// The display name.
    pub name: String,
    /// The category it is listed under.
    pub category: String,
    /// Minor units of `currency`.
    pub price_amount: i64,
    /// ISO 4217 code of the price, upper-case (`EUR`).
    pub currency: String,
    /// Units on hand at creation.
    pub stock: i64,
}

event!(ProductCreated, "product.created", 1, product_id);

/// A product's details or price changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpdated {
    /// The product's id; the subject.
    pub product_id: Uuid,
    /// The stock-keeping unit after the change.
    pub sku: String,
    /// The display name after the change.
    pub name: String,
    /// The category after the change.
    pub category: String,
    /// The price after the change, in minor units of `currency`.
    pub price_amount: i64,
    /// ISO 4217 code of the price, upper-case.
    pub currency: String,
    /// Which fields changed: `name`, `description`, `category`, `price`, `image_url`, `sku`.
    pub changed: Vec<String>,
}

event!(ProductUpdated, "product.updated", 1, product_id);

/// A product was withdrawn from the catalog (it stays readable for past orders).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductArchived {
    /// The product's id; the subject.
    pub product_id: Uuid,
}

event!(ProductArchived, "product.archived", 1, product_id);

/// A product's stock or reserved quantity changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryChanged {
    /// The product's id; the subject.
    pub product_id: Uuid,
    /// Units on hand after the change, reserved ones included.
    pub stock: i64,
    /// Units held by reservations not yet committed or released; never above `stock`.
    pub reserved: i64,
    /// Units that can still be ordered: `stock - reserved`.
    pub available: i64,
    /// `set`, `adjusted`, `reserved`, `released`, `committed`, `expired`, `returned` (a
    /// confirmed order cancelled: its units back in stock).
    pub reason: String,
    /// The order behind a reservation change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
}

event!(InventoryChanged, "inventory.changed", 1, product_id);

/// A product's available quantity fell below the low-stock threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryLow {
    /// The product's id; the subject.
    pub product_id: Uuid,
    /// Its stock-keeping unit, for whoever restocks.
    pub sku: String,
    /// Units that can still be ordered (`stock - reserved`), now below `threshold`.
    pub available: i64,
    /// The product service's `LOW_STOCK_THRESHOLD` (default 5).
    pub threshold: i64,
}

event!(InventoryLow, "inventory.low", 1, product_id);

/// The fields every payment event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFacts {
    /// The payment's id; the subject of every payment event.
    pub payment_id: Uuid,
    /// The order the payment is for.
    pub order_id: Uuid,
    /// The customer who pays.
    pub user_id: Uuid,
    /// Minor units of `currency`.
    pub amount: i64,
    /// ISO 4217 code, upper-case.
    pub currency: String,
    /// `sandbox`, `stripe`, `adyen`, or empty when no provider was reached.
    pub provider: String,
}

/// Money is held on the customer's card, not yet taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAuthorized {
    /// The payment, flattened into the payload.
    #[serde(flatten)]
    pub payment: PaymentFacts,
}

/// Money was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    /// The payment, flattened into the payload.
    #[serde(flatten)]
    pub payment: PaymentFacts,
}

/// The provider declined or the charge failed; nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    /// The payment, flattened into the payload.
    #[serde(flatten)]
    pub payment: PaymentFacts,
    /// Why, in words: a provider's decline as `code: message`, or what went wrong (an
    /// unavailable provider, a declined review); may be empty.
    pub reason: String,
}

/// Part or all of a captured payment was given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    /// The payment, flattened into the payload.
    #[serde(flatten)]
    pub payment: PaymentFacts,
    /// This refund, in minor units.
    pub refund_amount: i64,
    /// Every refund of the payment so far, this one included.
    pub refunded_total: i64,
    /// Why, in words, as given with the refund (`order cancelled`, an administrator's text,
    /// `refunded at the provider`).
    pub reason: String,
}

/// The fraud rules stopped the payment before any provider saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentBlocked {
    /// The payment, flattened into the payload.
    #[serde(flatten)]
    pub payment: PaymentFacts,
    /// The fraud score, 0 to 100: the points of the rules that fired.
    pub score: u8,
    /// Reason codes of the rules that fired.
    pub reasons: Vec<String>,
}

/// A payment is held for a person to decide: by the fraud rules (`held_by: "fraud"`, no
/// provider saw it yet) or by the provider (`"provider"`, e.g. 3-D Secure). Customers are told
/// their payment is being checked; administrators that a review is waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReviewRequested {
    /// The payment, flattened into the payload.
    #[serde(flatten)]
    pub payment: PaymentFacts,
    /// `fraud` or `provider`.
    pub held_by: String,
    /// The fraud score, 0 to 100.
    pub score: u8,
    /// Reason codes of the rules that fired.
    pub reasons: Vec<String>,
}

/// A held payment was decided: `approved` (an administrator; the charge went to a provider),
/// `declined` (an administrator, or the checkout gave up on it) or `expired`
/// (`PAYMENT_REVIEW_TTL` passed). A `payment.captured` or `payment.failed` follows or
/// accompanies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReviewDecided {
    /// The payment, flattened into the payload.
    #[serde(flatten)]
    pub payment: PaymentFacts,
    /// `approved`, `declined` or `expired`.
    pub decision: String,
    /// Why, in the decider's words (never shown as free text to other customers).
    pub reason: String,
}

/// `facts_events!(facts.id: Payload => "type", …)`: events whose subject is `self.facts.id`,
/// for families whose payloads share one flattened block of facts.
macro_rules! facts_events {
    ($facts:ident . $id:ident : $($payload:ty => $type:literal),* $(,)?) => {$(
        impl Event for $payload {
            const TYPE: &'static str = $type;
            const SCHEMA_VERSION: u32 = 1;
            fn subject(&self) -> String {
                self.$facts.$id.to_string()
            }
        }
    )*};
}

facts_events! { payment.payment_id:
    PaymentAuthorized => "payment.authorized",
    PaymentCaptured => "payment.captured",
    PaymentFailed => "payment.failed",
    PaymentRefunded => "payment.refunded",
    PaymentBlocked => "payment.blocked",
    PaymentReviewRequested => "payment.review_requested",
    PaymentReviewDecided => "payment.review_decided",
}

/// The fields every order event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// The order's id; the subject of every order event.
    pub order_id: Uuid,
    /// The customer who placed it.
    pub user_id: Uuid,
    /// The order total in minor units of `currency`.
    pub total: i64,
    /// ISO 4217 code, upper-case; every line is in it.
    pub currency: String,
}

/// One line of an order, priced when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: Uuid,
    /// The product's name when the order was placed.
    pub name: String,
    /// Units ordered; at least 1.
    pub quantity: u32,
    /// Minor units of the order's currency.
    pub unit_price: i64,
}

/// An order was accepted and its checkout started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// The order, flattened into the payload.
    #[serde(flatten)]
    pub order: OrderFacts,
    /// The lines, as ordered.
    pub items: Vec<OrderLine>,
}

/// Stock is committed and the payment taken: the order will be fulfilled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    /// The order, flattened into the payload.
    #[serde(flatten)]
    pub order: OrderFacts,
    /// The captured payment.
    pub payment_id: Uuid,
}

/// Checkout failed; whatever was reserved or charged has been given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailed {
    /// The order, flattened into the payload.
    #[serde(flatten)]
    pub order: OrderFacts,
    /// Why checkout failed, in words (`out of stock: …`, `payment declined`, …).
    pub reason: String,
    /// Minor units charged and given back (0 when nothing had been captured). Absent in
    /// events written before it existed.
    #[serde(default)]
    pub refunded: i64,
}

/// The order was cancelled; stock was released and any captured payment refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// The order, flattened into the payload.
    #[serde(flatten)]
    pub order: OrderFacts,
    /// Minor units given back (0 when nothing had been charged).
    pub refunded: i64,
}

/// The order left the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped {
    /// The order, flattened into the payload.
    #[serde(flatten)]
    pub order: OrderFacts,
}

/// The order reached the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDelivered {
    /// The order, flattened into the payload.
    #[serde(flatten)]
    pub order: OrderFacts,
}

facts_events! { order.order_id:
    OrderCreated => "order.created",
    OrderConfirmed => "order.confirmed",
    OrderFailed => "order.failed",
    OrderCancelled => "order.cancelled",
    OrderShipped => "order.shipped",
    OrderDelivered => "order.delivered",
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::family_of;

    #[test]
    fn every_event_type_belongs_to_a_listed_family() {
        for event_type in [
            UserRegistered::TYPE,
            UserUpdated::TYPE,
            UserDeleted::TYPE,
            ProductCreated::TYPE,
            ProductUpdated::TYPE,
            ProductArchived::TYPE,
            InventoryChanged::TYPE,
            InventoryLow::TYPE,
            PaymentAuthorized::TYPE,
            PaymentCaptured::TYPE,
            PaymentFailed::TYPE,
            PaymentRefunded::TYPE,
            PaymentBlocked::TYPE,
            PaymentReviewRequested::TYPE,
            PaymentReviewDecided::TYPE,
            OrderCreated::TYPE,
            OrderConfirmed::TYPE,
            OrderFailed::TYPE,
            OrderCancelled::TYPE,
            OrderShipped::TYPE,
            OrderDelivered::TYPE,
        ] {
            assert!(FAMILIES.contains(&family_of(event_type)), "{event_type}");
        }
        for action in platform_audit::Action::ALL {
            let event_type = crate::audit::event_type(action);
            assert!(FAMILIES.contains(&family_of(&event_type)), "{event_type}");
        }
    }
}
