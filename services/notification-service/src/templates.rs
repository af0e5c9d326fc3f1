//! The message templates (minijinja): for each template a subject, a plain-text body and an
//! HTML body, rendered from a JSON context (an event's payload plus what the service adds,
//! such as the recipient's name and formatted amounts).
//!
//! HTML bodies are auto-escaped (their names end in `.html`), so a name or product SKU from an
//! event cannot inject markup into an email. Undefined variables are errors outside `if`
//! tests (`SemiStrict`): a direct notification posted with missing data is refused instead of
//! going out with holes in it.

use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};

/// The built-in templates: `(name, subject, text, html)`.
const BUILTIN: &[(&str, &str, &str, &str)] = &[
    (
        "welcome",
        "Welcome to the shop, {{ name }}!",
        "Hello {{ name }},\n\nthank you for signing up. Your account {{ email }} is ready.\n\nHappy shopping!",
        "<p>Hello {{ name }},</p><p>thank you for signing up. Your account <b>{{ email }}</b> is ready.</p><p>Happy shopping!</p>",
    ),
    (
        "order_confirmed",
        "Order {{ order_id }} confirmed",
        "Hello {{ name }},\n\nyour order {{ order_id }} is confirmed. We charged {{ total_display }}.",
        "<p>Hello {{ name }},</p><p>your order <b>{{ order_id }}</b> is confirmed. We charged {{ total_display }}.</p>",
    ),
    (
        "order_failed",
        "Order {{ order_id }} could not be completed",
        "Hello {{ name }},\n\nwe could not complete your order {{ order_id }}: {{ reason }}.{% if refunded_display %} We refunded {{ refunded_display }} to your card.{% endif %}",
        "<p>Hello {{ name }},</p><p>we could not complete your order <b>{{ order_id }}</b>: {{ reason }}.{% if refunded_display %} We refunded <b>{{ refunded_display }}</b> to your card.{% endif %}</p>",
    ),
    (
        "order_shipped",
        "Order {{ order_id }} has shipped",
        "Hello {{ name }},\n\nyour order {{ order_id }} is on its way.",
        "<p>Hello {{ name }},</p><p>your order <b>{{ order_id }}</b> is on its way.</p>",
    ),
    (
        "payment_refunded",
        "Refund of {{ refund_display }} for order {{ order_id }}",
        "Hello {{ name }},\n\nwe refunded {{ refund_display }} of your payment for order {{ order_id }}.",
        "<p>Hello {{ name }},</p><p>we refunded <b>{{ refund_display }}</b> of your payment for order {{ order_id }}.</p>",
    ),
    (
        "payment_review_requested",
        "Your payment for order {{ order_id }} is being checked",
        "Hello {{ name }},\n\nyour payment of {{ amount_display }} for order {{ order_id }} needs a short check before it goes through. The amount is not charged until the check is done, and we will let you know the outcome.",
        "<p>Hello {{ name }},</p><p>your payment of <b>{{ amount_display }}</b> for order <b>{{ order_id }}</b> needs a short check before it goes through. The amount is not charged until the check is done, and we will let you know the outcome.</p>",
    ),
    (
        "payment_review_waiting",
        "A payment is waiting for review",
        "A payment is waiting for review.\n\nOrder: {{ order_id }}\nPayment: {{ payment_id }}\nAmount: {{ amount_display }}\nHeld by: {{ held_by }}\nScore: {{ score }}\nReasons: {{ reasons_display or \"none given\" }}",
        "<p>A payment is waiting for review.</p><ul><li>Order: <b>{{ order_id }}</b></li><li>Payment: {{ payment_id }}</li><li>Amount: {{ amount_display }}</li><li>Held by: {{ held_by }}</li><li>Score: {{ score }}</li><li>Reasons: {{ reasons_display or \"none given\" }}</li></ul>",
    ),
    (
        "payment_review_decided",
        "{% if decision == \"approved\" %}Your payment for order {{ order_id }} was approved{% else %}Your payment for order {{ order_id }} was not approved{% endif %}",
        "Hello {{ name }},\n\n{% if decision == \"approved\" %}your payment of {{ amount_display }} for order {{ order_id }} was approved; your order continues.{% else %}your payment of {{ amount_display }} for order {{ order_id }} was not approved; nothing was charged.{% endif %}",
        "<p>Hello {{ name }},</p><p>{% if decision == \"approved\" %}your payment of <b>{{ amount_display }}</b> for order <b>{{ order_id }}</b> was approved; your order continues.{% else %}your payment of <b>{{ amount_display }}</b> for order <b>{{ order_id }}</b> was not approved; nothing was charged.{% endif %}</p>",
    ),
    (
        "inventory_low",
        "Low stock: {{ sku }}",
        "Only {{ available }} of {{ sku }} left (threshold {{ threshold }}).",
        "<p>Only <b>{{ available }}</b> of {{ sku }} left (threshold {{ threshold }}).</p>",
    ),
];

/// One template rendered for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("no template named {0:?}")]
    Unknown(String),
    /// minijinja's message names the template, line and the undefined variable.
    #[error("cannot render: {0}")]
    Render(String),
}

/// The compiled templates. Cheap to clone.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &Self::names().collect::<Vec<_>>())
            .finish()
    }
}

impl Templates {
    /// The built-in templates, compiled.
    pub fn builtin() -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        for (name, subject, text, html) in BUILTIN {
            for (suffix, source) in [
                ("subject.txt", subject),
                ("text.txt", text),
                ("html.html", html),
            ] {
                env.add_template_owned(format!("{name}.{suffix}"), *source)
                    .map_err(|e| TemplateError::Render(e.to_string()))?;
            }
        }
        Ok(Self { env: Arc::new(env) })
    }

    pub fn names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(name, ..)| *name)
    }

    pub fn exists(name: &str) -> bool {
        Self::names().any(|known| known == name)
    }

    pub fn render(
        &self,
        name: &str,
        context: &serde_json::Value,
    ) -> Result<Rendered, TemplateError> {
        if !Self::exists(name) {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        let part = |suffix: &str| -> Result<String, TemplateError> {
            self.env
                .get_template(&format!("{name}.{suffix}"))
                .and_then(|template| template.render(Serde(context)))
                .map_err(|e| TemplateError::Render(e.to_string()))
        };
        Ok(Rendered {
            // A subject is one line: a newline there would start a new email header.
            subject: part("subject.txt")?.replace(['\r', '\n'], " "),
            text: part("text.txt")?,
            html: Some(part("html.html")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_builtin_renders_and_html_is_escaped() {
        let templates = Templates::builtin().unwrap();
        let context = json!({
            "name": "<script>x</script>", "email": "a@b.co", "order_id": "o-1",
            "total_display": "49.99 EUR", "reason": "declined", "refund_display": "5.00 EUR",
            "sku": "SKU-1", "available": 2, "threshold": 5, "payment_id": "p-1",
            "amount_display": "49.99 EUR", "held_by": "fraud", "score": 80,
            "reasons_display": "<b>velocity</b>", "decision": "approved",
        });
        for name in Templates::names() {
            let rendered = templates.render(name, &context).unwrap();
            assert!(!rendered.subject.is_empty(), "{name}");
            let html = rendered.html.unwrap();
            assert!(!html.contains("<script>"), "{name}: {html}");
        }
        let welcome = templates.render("welcome", &context).unwrap();
        assert!(
            welcome.text.contains("<script>x</script>"),
            "text is not HTML"
        );
        assert!(welcome.subject.starts_with("Welcome"));
    }

    #[test]
    fn order_failed_mentions_a_refund_only_when_there_was_one() {
        let templates = Templates::builtin().unwrap();
        let mut context = json!({
            "name": "Ada", "order_id": "o-1", "reason": "out of stock",
            "refunded_display": "25.00 EUR",
        });
        let refunded = templates.render("order_failed", &context).unwrap();
        assert!(
            refunded
                .text
                .ends_with("out of stock. We refunded 25.00 EUR to your card."),
            "{}",
            refunded.text
        );
        assert!(
            refunded
                .html
                .unwrap()
                .contains("We refunded <b>25.00 EUR</b>")
        );
        assert!(!refunded.text.contains("Nothing was charged"));
        context["refunded_display"] = json!("");
        let nothing = templates.render("order_failed", &context).unwrap();
        assert!(nothing.text.ends_with("out of stock."), "{}", nothing.text);
        assert!(!nothing.text.contains("refund"));
        assert!(!nothing.html.unwrap().contains("refund"));
        // A direct notification with the old data still renders.
        context.as_object_mut().unwrap().remove("refunded_display");
        let old = templates.render("order_failed", &context).unwrap();
        assert!(!old.text.contains("refund"), "{}", old.text);
    }

    #[test]
    fn review_decisions_read_differently() {
        let templates = Templates::builtin().unwrap();
        let context = |decision: &str| {
            json!({"name": "Ada", "order_id": "o-1", "amount_display": "49.99 EUR",
                   "decision": decision})
        };
        let approved = templates
            .render("payment_review_decided", &context("approved"))
            .unwrap();
        assert_eq!(approved.subject, "Your payment for order o-1 was approved");
        assert!(approved.text.contains("approved; your order continues."));
        for decision in ["declined", "expired"] {
            let refused = templates
                .render("payment_review_decided", &context(decision))
                .unwrap();
            assert_eq!(
                refused.subject,
                "Your payment for order o-1 was not approved"
            );
            assert!(
                refused
                    .text
                    .contains("was not approved; nothing was charged."),
                "{}",
                refused.text
            );
            assert!(!refused.text.contains("continues"));
        }
    }

    #[test]
    fn missing_data_and_unknown_names_are_errors() {
        let templates = Templates::builtin().unwrap();
        assert!(matches!(
            templates.render("order_shipped", &json!({"name": "A"})),
            Err(TemplateError::Render(_))
        ));
        assert!(matches!(
            templates.render("nope", &json!({})),
            Err(TemplateError::Unknown(_))
        ));
    }
}
