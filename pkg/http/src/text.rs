//! Free text a client sends as a reason (refunds, review decisions): one rule, and the schema
//! that says it in the API document.

use utoipa::openapi::schema::Type;
use utoipa::openapi::{Object, ObjectBuilder};

/// The most characters a reason may have (counted as sent, before trimming).
pub const REASON_MAX_CHARS: usize = 500;

/// Some visible character, and no control character (tab and newline included).
const REASON_PATTERN: &str =
    "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$";

/// Text that may span lines (tab and newline allowed), with some visible character.
pub const LINE_PATTERN: &str = "^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]*$";
/// Text that may span lines and may be blank: no control characters but tab and newline.
pub const TEXT_PATTERN: &str = "^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]*$";

/// A string matching `pattern`, at most `max` characters.
pub fn pattern_schema(pattern: &'static str, max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max))
        .pattern(Some(pattern))
        .build()
}

/// [`pattern_schema`], or `null` (an optional field that may be sent as `null`).
pub fn pattern_schema_or_null(pattern: &'static str, max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .build()
}

/// What [`reason`] takes, for `#[schema(schema_with = …)]`.
pub fn reason_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(REASON_MAX_CHARS))
        .pattern(Some(REASON_PATTERN))
        .build()
}

/// A reason, trimmed: 1 to 500 characters, something besides white space, no control
/// characters.
pub fn reason(raw: &str) -> Result<String, &'static str> {
    const RULE: &str = "must be 1 to 500 characters, not only spaces, without control characters";
    let trimmed = raw.trim();
    if trimmed.is_empty()
        || raw.chars().count() > REASON_MAX_CHARS
        || raw.chars().any(char::is_control)
    {
        return Err(RULE);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_visible_text_without_control_characters() {
        assert_eq!(
            reason("  damaged in transit ").unwrap(),
            "damaged in transit"
        );
        assert!(reason("").is_err());
        assert!(reason("   ").is_err());
        assert!(reason("a\u{0}b").is_err());
        assert!(reason("two\nlines").is_err());
        assert!(reason("\u{85}").is_err());
        assert!(reason(&"x".repeat(500)).is_ok());
        assert!(reason(&"x".repeat(501)).is_err());
        assert!(
            reason(&format!(" {}", "x".repeat(500))).is_err(),
            "counted as sent"
        );
    }
}
