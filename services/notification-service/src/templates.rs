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
        "Hello {{ name }},\n\nwe could not complete your order {{ order_id }}: {{ reason }}. Nothing was charged.",
        "<p>Hello {{ name }},</p><p>we could not complete your order <b>{{ order_id }}</b>: {{ reason }}. Nothing was charged.</p>",
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
            "sku": "SKU-1", "available": 2, "threshold": 5,
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
