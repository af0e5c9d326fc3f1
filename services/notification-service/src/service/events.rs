//! Bus events → messages: which topic, template and audience each event type means, applied
//! at most once per event (its messages commit with its idempotency record).

use chrono::Utc;
use platform_events::catalogue::{
    InventoryLow, OrderConfirmed, OrderFacts, OrderFailed, OrderShipped, PaymentFacts,
    PaymentRefunded, PaymentReviewDecided, PaymentReviewRequested, UserDeleted, UserRegistered,
};
use platform_events::{Envelope, Event, idempotency};
use platform_money::{Currency, Money};
use sea_orm::ConnectionTrait;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Content, Created, Notifications, NotifyError, Plan};
use crate::domain::Topic;
use crate::repo::{self, ContactRow};

/// The role whose holders receive `inventory.low` and `payment.review_requested`.
const ADMIN_ROLE: &str = "admin";

impl Notifications {
    /// Applies one event at most once: its messages and its idempotency record commit
    /// together.
    pub async fn handle_event(&self, envelope: &Envelope) -> Result<(), NotifyError> {
        let txn = platform_db::begin_write(&self.inner.db).await?;
        if !idempotency::first_time(&txn, &self.inner.group, envelope.id).await? {
            tracing::debug!(id = %envelope.id, r#type = %envelope.event_type, "event already handled");
            return Ok(());
        }
        let mut created = Vec::new();
        match envelope.event_type.as_str() {
            UserRegistered::TYPE => {
                let event: UserRegistered = decode(envelope)?;
                let contact = ContactRow {
                    user_id: event.user_id,
                    email: event.email,
                    name: event.name,
                    role: event.role,
                    updated_at: Utc::now(),
                };
                repo::upsert_contact(&txn, contact.clone()).await?;
                created.extend(self.address_waiting(&txn, &contact).await?);
                let plan = self.event_plan(
                    Topic::UserRegistered,
                    envelope,
                    event.user_id,
                    json!({}),
                    json!({}),
                );
                created.extend(self.create(&txn, plan).await?);
            }
            UserDeleted::TYPE => {
                let event: UserDeleted = decode(envelope)?;
                repo::delete_user(&txn, event.user_id).await?;
            }
            OrderConfirmed::TYPE => {
                let event: OrderConfirmed = decode(envelope)?;
                created.extend(
                    self.order(
                        &txn,
                        Topic::OrderConfirmed,
                        envelope,
                        &event.order,
                        json!({}),
                    )
                    .await?,
                );
            }
            OrderFailed::TYPE => {
                let event: OrderFailed = decode(envelope)?;
                // The template mentions a refund only when money was taken and given back;
                // whether anything was charged otherwise is the reason's to say.
                let refunded_display = if event.refunded > 0 {
                    display_money(event.refunded, &event.order.currency)
                } else {
                    String::new()
                };
                let extra = json!({
                    "reason": event.reason,
                    "refunded": event.refunded,
                    "refunded_display": refunded_display,
                });
                created.extend(
                    self.order(&txn, Topic::OrderFailed, envelope, &event.order, extra)
                        .await?,
                );
            }
            OrderShipped::TYPE => {
                let event: OrderShipped = decode(envelope)?;
                created.extend(
                    self.order(&txn, Topic::OrderShipped, envelope, &event.order, json!({}))
                        .await?,
                );
            }
            PaymentRefunded::TYPE => {
                let event: PaymentRefunded = decode(envelope)?;
                let facts = &event.payment;
                let context = json!({
                    "refund_display": display_money(event.refund_amount, &facts.currency),
                    "refunded_total_display": display_money(event.refunded_total, &facts.currency),
                });
                let data = payment_data(facts);
                let plan = self.event_plan(
                    Topic::PaymentRefunded,
                    envelope,
                    facts.user_id,
                    context,
                    data,
                );
                created.extend(self.create(&txn, plan).await?);
            }
            PaymentReviewRequested::TYPE => {
                let event: PaymentReviewRequested = decode(envelope)?;
                let facts = &event.payment;
                let context = json!({
                    "amount_display": display_money(facts.amount, &facts.currency),
                    "reasons_display": event.reasons.join(", "),
                });
                let data = payment_data(facts);
                let plan = self.event_plan(
                    Topic::PaymentReviewRequested,
                    envelope,
                    facts.user_id,
                    context.clone(),
                    data.clone(),
                );
                created.extend(self.create(&txn, plan).await?);
                for admin in repo::contacts_with_role(&txn, ADMIN_ROLE).await? {
                    // One message per event, user and channel: an administrator whose own
                    // payment is held got the customer's message (and should not review it).
                    if admin.user_id == facts.user_id {
                        continue;
                    }
                    let plan = self.event_plan_with(
                        Topic::PaymentReviewRequested,
                        REVIEW_WAITING_TEMPLATE,
                        envelope,
                        admin.user_id,
                        context.clone(),
                        data.clone(),
                    );
                    created.extend(self.create(&txn, plan).await?);
                }
            }
            PaymentReviewDecided::TYPE => {
                let event: PaymentReviewDecided = decode(envelope)?;
                let facts = &event.payment;
                let context = json!({
                    "amount_display": display_money(facts.amount, &facts.currency),
                });
                let plan = self.event_plan(
                    Topic::PaymentReviewDecided,
                    envelope,
                    facts.user_id,
                    context,
                    payment_data(facts),
                );
                created.extend(self.create(&txn, plan).await?);
            }
            InventoryLow::TYPE => {
                let event: InventoryLow = decode(envelope)?;
                let data = json!({ "product_id": event.product_id, "sku": event.sku });
                for admin in repo::contacts_with_role(&txn, ADMIN_ROLE).await? {
                    let plan = self.event_plan(
                        Topic::InventoryLow,
                        envelope,
                        admin.user_id,
                        json!({}),
                        data.clone(),
                    );
                    created.extend(self.create(&txn, plan).await?);
                }
            }
            // Subscribed families carry other types too; they are not ours.
            _ => {}
        }
        txn.commit().await?;
        self.after_commit(&created);
        Ok(())
    }

    async fn order<C: ConnectionTrait>(
        &self,
        conn: &C,
        topic: Topic,
        envelope: &Envelope,
        order: &OrderFacts,
        mut context: Value,
    ) -> Result<Vec<Created>, NotifyError> {
        if let Value::Object(map) = &mut context {
            map.insert(
                "total_display".to_owned(),
                Value::String(display_money(order.total, &order.currency)),
            );
        }
        let data = json!({ "order_id": order.order_id });
        let plan = self.event_plan(topic, envelope, order.user_id, context, data);
        self.create(conn, plan).await
    }

    /// A plan for an event: its topic's template gets the payload, `extra` and the recipient.
    fn event_plan(
        &self,
        topic: Topic,
        envelope: &Envelope,
        user: Uuid,
        extra: Value,
        data: Value,
    ) -> Plan {
        self.event_plan_with(topic, template_of(topic), envelope, user, extra, data)
    }

    /// [`Self::event_plan`] with another template than the topic's.
    fn event_plan_with(
        &self,
        topic: Topic,
        template: &str,
        envelope: &Envelope,
        user: Uuid,
        extra: Value,
        data: Value,
    ) -> Plan {
        let mut context = match &envelope.data {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        if let Value::Object(extra) = extra {
            context.extend(extra);
        }
        Plan {
            topic,
            event_id: Some(envelope.id),
            user,
            only: None,
            content: Content::Template {
                name: template.to_owned(),
                context: Value::Object(context),
            },
            data,
        }
    }
}

fn decode<E: Event>(envelope: &Envelope) -> Result<E, NotifyError> {
    serde_json::from_value(envelope.data.clone()).map_err(|e| NotifyError::MalformedEvent {
        event_type: envelope.event_type.clone(),
        reason: e.to_string(),
    })
}

/// What the app gets with a payment's messages.
fn payment_data(facts: &PaymentFacts) -> Value {
    json!({ "order_id": facts.order_id, "payment_id": facts.payment_id })
}

/// What administrators get for `payment.review_requested` (the customer gets the topic's own).
const REVIEW_WAITING_TEMPLATE: &str = "payment_review_waiting";

/// The built-in template of each event topic (for its customer, where a topic has several
/// audiences).
fn template_of(topic: Topic) -> &'static str {
    match topic {
        Topic::UserRegistered => "welcome",
        Topic::OrderConfirmed => "order_confirmed",
        Topic::OrderFailed => "order_failed",
        Topic::OrderShipped => "order_shipped",
        Topic::PaymentRefunded => "payment_refunded",
        Topic::PaymentReviewRequested => "payment_review_requested",
        Topic::PaymentReviewDecided => "payment_review_decided",
        Topic::InventoryLow => "inventory_low",
        // Direct notifications name their template (or give their text).
        Topic::Direct => "",
    }
}

/// `4999, EUR` → `49.99 EUR`; an unknown currency shows the raw minor units.
fn display_money(amount: i64, currency: &str) -> String {
    Currency::parse(currency)
        .ok()
        .and_then(|c| Money::new(amount, c).ok())
        .map_or_else(|| format!("{amount} {currency}"), |money| money.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(display_money(4999, "EUR"), "49.99 EUR");
        assert_eq!(display_money(500, "JPY"), "500 JPY");
        assert_eq!(display_money(12, "XXX?"), "12 XXX?");
    }
}
