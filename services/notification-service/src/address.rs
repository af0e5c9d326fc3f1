//! Validated addresses: where a notification can be delivered.
//!
//! Each type is parsed once, at the edge (a user's profile, an event payload), so that a
//! delivery channel never has to ask whether its recipient is well-formed, and so that a
//! malformed value fails fast as a permanent error instead of being retried against a
//! provider that will refuse it every time.
//!
//! - [`EmailAddress`]: the common RFC 5321 shape, `local@domain`, with the domain lower-cased
//!   (domains are case-insensitive; local parts, strictly, are not, so they are kept as given).
//!   Quoted local parts (`"john doe"@example.com`), address literals (`user@[10.0.0.1]`) and
//!   non-ASCII addresses (SMTPUTF8) are refused: real sign-ups almost never use them, and every
//!   one of them is a chance to smuggle header syntax into an email.
//! - [`PhoneNumber`]: E.164 (`+` and 8–15 digits), which is what SMS providers take; the
//!   spaces, dashes and parentheses people type are dropped.
//! - [`DeviceToken`]: an opaque push token (FCM registration token, APNs token in hex).
//!
//! Errors name the rule that was broken, never the value: addresses are personal data and
//! errors end up in logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value is not a usable address. Carries the rule, not the value (personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("invalid email address: {0}")]
    Email(&'static str),
    #[error("invalid phone number: {0}")]
    Phone(&'static str),
    #[error("invalid device token: {0}")]
    DeviceToken(&'static str),
}

/// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 caps a path at 256 octets including the angle brackets, so 254 for the address.
const MAX_EMAIL: usize = 254;
/// RFC 1035: a DNS label is at most 63 octets.
const MAX_LABEL: usize = 63;

/// An email address, trimmed, with its domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress {
    value: String,
    /// Byte index of the `@`, so the halves can be handed out without re-parsing.
    at: usize,
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, AddressError> {
        let invalid = AddressError::Email;
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(invalid("empty"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains spaces or control characters"));
        }
        let (local, domain) = match raw.split_once('@') {
            Some((local, domain)) if !domain.contains('@') => (local, domain),
            Some(_) => return Err(invalid("more than one @")),
            None => return Err(invalid("no @")),
        };
        if local.is_empty() || local.len() > MAX_LOCAL_PART {
            return Err(invalid("the part before @ must be 1 to 64 characters"));
        }
        if !is_dot_atom(local, is_atext) {
            return Err(invalid(
                "the part before @ has characters an address cannot use",
            ));
        }
        if !domain.contains('.') {
            return Err(invalid("the domain must contain a dot"));
        }
        if !is_dot_atom(domain, is_label_char)
            || domain.split('.').any(|label| {
                label.len() > MAX_LABEL || label.starts_with('-') || label.ends_with('-')
            })
        {
            return Err(invalid("the domain is not a valid host name"));
        }
        if raw.len() > MAX_EMAIL {
            return Err(invalid("longer than 254 characters"));
        }
        Ok(Self {
            value: format!("{local}@{}", domain.to_ascii_lowercase()),
            at: local.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The part before the `@`, as given.
    pub fn local_part(&self) -> &str {
        &self.value[..self.at]
    }

    /// The part after the `@`, lower-cased.
    pub fn domain(&self) -> &str {
        &self.value[self.at + 1..]
    }
}

/// Dot-separated runs of allowed characters: no leading, trailing or doubled dot.
fn is_dot_atom(text: &str, allowed: fn(char) -> bool) -> bool {
    text.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(allowed))
}

/// RFC 5322 `atext`: what an unquoted local part may contain.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// E.164 allows at most 15 digits after the `+`.
const MAX_PHONE_DIGITS: usize = 15;
/// Shorter than any real subscriber number with its country code; catches truncated input.
const MIN_PHONE_DIGITS: usize = 8;

/// A phone number in E.164 form: `+` followed by 8–15 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts what people type (`+49 (151) 123-45678`) and keeps only the `+` and digits.
    /// The `+` is required: without it the country is a guess.
    pub fn parse(raw: &str) -> Result<Self, AddressError> {
        let invalid = AddressError::Phone;
        let Some(rest) = raw.trim().strip_prefix('+') else {
            return Err(invalid("must start with + and the country code"));
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' => {}
                _ => {
                    return Err(invalid(
                        "only digits, spaces, dashes and parentheses may follow +",
                    ));
                }
            }
        }
        if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len()) {
            return Err(invalid("must have 8 to 15 digits"));
        }
        if digits.starts_with('0') {
            return Err(invalid("a country code never starts with 0"));
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longer than any token FCM or APNs issue today, short enough to bound what we store.
const MAX_DEVICE_TOKEN: usize = 4096;

/// A push notification token, as the device's SDK reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceToken(String);

impl DeviceToken {
    pub fn parse(raw: &str) -> Result<Self, AddressError> {
        let invalid = AddressError::DeviceToken;
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_DEVICE_TOKEN {
            return Err(invalid("must be 1 to 4096 characters"));
        }
        // The alphabet of FCM tokens (base64url plus `:`) and of hex APNs tokens; anything
        // else is not a token and could not be put into a JSON body or a URL safely anyway.
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-'))
        {
            return Err(invalid("only letters, digits and _ : . - are allowed"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_like {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = AddressError;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::parse(raw)
            }
        }

        impl TryFrom<String> for $t {
            type Error = AddressError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.as_str().to_owned()
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    )*};
}

string_like!(EmailAddress, PhoneNumber, DeviceToken);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_emails_are_normalised() {
        let email = EmailAddress::parse("  Jane.Doe+shop@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "Jane.Doe+shop@example.com");
        assert_eq!(email.local_part(), "Jane.Doe+shop");
        assert_eq!(email.domain(), "example.com");
        for ok in [
            "a@b.co",
            "o'brien@mail.example.org",
            "x_y-z@sub-domain.example.io",
            "user!#$%&*/=?^`{|}~@example.com",
        ] {
            assert_eq!(EmailAddress::parse(ok).unwrap().as_str(), ok, "{ok}");
        }
        let longest_local = format!("{}@example.com", "a".repeat(64));
        assert!(EmailAddress::parse(&longest_local).is_ok());
    }

    #[test]
    fn invalid_emails_are_refused() {
        let too_long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let cases = [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "user@",
            "a@b@example.com",
            "user@localhost",
            "user name@example.com",
            "user@exa mple.com",
            "user\t@example.com",
            "user\r\nBcc: x@evil.com@example.com",
            ".user@example.com",
            "user.@example.com",
            "us..er@example.com",
            "user@.example.com",
            "user@example..com",
            "user@example.com.",
            "user@-example.com",
            "user@example-.com",
            "user@exa_mple.com",
            "\"quoted\"@example.com",
            "user@[10.0.0.1]",
            "<user@example.com>",
            "jürgen@example.com",
            too_long_local.as_str(),
            long_label.as_str(),
        ];
        for bad in cases {
            assert!(
                matches!(EmailAddress::parse(bad), Err(AddressError::Email(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn total_length_is_capped_at_254() {
        // 64 + 1 + 189 = 254: labels of 63 characters joined by dots.
        let domain = format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(61));
        let max = format!("{}@{domain}", "x".repeat(64));
        assert_eq!(max.len(), 254);
        assert!(EmailAddress::parse(&max).is_ok());
        let over = format!("{}@{domain}z", "x".repeat(64));
        assert!(EmailAddress::parse(&over).is_err());
    }

    #[test]
    fn errors_do_not_repeat_the_value() {
        let err = EmailAddress::parse("secret.person@nowhere").unwrap_err();
        assert!(!err.to_string().contains("secret.person"));
    }

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        for (raw, expected) in [
            ("+4915112345678", "+4915112345678"),
            (" +49 151 1234-5678 ", "+4915112345678"),
            ("+1 (555) 123-4567", "+15551234567"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ] {
            assert_eq!(PhoneNumber::parse(raw).unwrap().as_str(), expected, "{raw}");
        }
    }

    #[test]
    fn invalid_phone_numbers_are_refused() {
        for bad in [
            "",
            "+",
            "4915112345678",
            "004915112345678",
            "+0151123456789",
            "+1234567",
            "+1234567890123456",
            "+49 151 1234 5678x",
            "+49.151.12345678",
            "+49151++12345678",
            "+1 555 CALL NOW",
            "(+1) 555 123 4567",
        ] {
            assert!(
                matches!(PhoneNumber::parse(bad), Err(AddressError::Phone(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn device_tokens() {
        let fcm = "cQ3x-Fk9T0e:APA91bH_z.8-abc";
        assert_eq!(DeviceToken::parse(fcm).unwrap().as_str(), fcm);
        assert_eq!(DeviceToken::parse("  abc ").unwrap().as_str(), "abc");
        let longest = "a".repeat(4096);
        assert!(DeviceToken::parse(&longest).is_ok());
        let too_long = "a".repeat(4097);
        for bad in [
            "",
            "  ",
            "abc def",
            "abc/def",
            "abc+def=",
            "tök",
            "a\nb",
            too_long.as_str(),
        ] {
            assert!(
                matches!(DeviceToken::parse(bad), Err(AddressError::DeviceToken(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn serde_validates() {
        let email: EmailAddress = serde_json::from_str("\"A@Example.com\"").unwrap();
        assert_eq!(serde_json::to_string(&email).unwrap(), "\"A@example.com\"");
        assert!(serde_json::from_str::<EmailAddress>("\"nope\"").is_err());
        assert!(serde_json::from_str::<PhoneNumber>("\"12345\"").is_err());
        assert_eq!(
            "+1 555 123 4567"
                .parse::<PhoneNumber>()
                .unwrap()
                .to_string(),
            "+15551234567"
        );
    }
}
