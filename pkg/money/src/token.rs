//! The card token: a payment provider's stand-in for a card. One type for every service that
//! takes one (the order service at checkout, the payment service at the charge), so a token the
//! order accepts is one the charge accepts.

use std::fmt;

/// Why a text is not a card token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It looks like a card number (12 or more digits, with or without separators): refused,
    /// and never echoed or stored.
    #[error("must be a payment token (tok_…, pm_…), never a card number")]
    CardNumber,
    /// It is not shaped like a token.
    #[error("must be a payment token: tok_… or pm_…, 5 to 255 letters, digits, `_` and `-`")]
    NotAToken,
}

/// A provider's stand-in for a card (`tok_…`, `pm_…`): raw card numbers never reach the
/// platform. Only the brand and last four digits the provider reports are kept.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CardToken(String);

impl CardToken {
    /// Accepts `tok_`/`pm_` tokens of 5 to 255 letters, digits, `_` and `-` (surrounding
    /// whitespace trimmed); anything that looks like a card number (12 or more digits, with or
    /// without separators) is refused as [`TokenError::CardNumber`], so a client mistake never
    /// stores a PAN.
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        let token = raw.trim();
        if token.chars().filter(char::is_ascii_digit).count() >= 12 {
            return Err(TokenError::CardNumber);
        }
        let shaped = (token.starts_with("tok_") || token.starts_with("pm_"))
            && (5..=255).contains(&token.len())
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !shaped {
            return Err(TokenError::NotAToken);
        }
        Ok(Self(token.to_owned()))
    }

    /// The token, to send to the provider.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tokens are credentials of a sort: logs show only their start.
impl fmt::Debug for CardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(8).collect();
        write!(f, "CardToken({shown}…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_card_numbers() {
        assert!(CardToken::parse("tok_visa").is_ok());
        assert!(CardToken::parse("pm_card_visa").is_ok());
        assert_eq!(CardToken::parse(" tok_visa ").unwrap().as_str(), "tok_visa");
        for pan in [
            "4242424242424242",
            "4242-4242-4242-4242",
            "4242 4242 4242 4242",
            "378282246310005",
            "tok_4242424242424242",
        ] {
            assert_eq!(CardToken::parse(pan), Err(TokenError::CardNumber), "{pan}");
        }
        for bad in ["", "visa", "tok_", "tok visa", "tok_a b", "tok_\u{e9}"] {
            assert_eq!(CardToken::parse(bad), Err(TokenError::NotAToken), "{bad:?}");
        }
        assert!(CardToken::parse(&format!("tok_{}", "a".repeat(252))).is_err());
    }

    #[test]
    fn debug_shows_only_the_start() {
        assert_eq!(
            format!("{:?}", CardToken::parse("tok_visa_secret").unwrap()),
            "CardToken(tok_visa…)"
        );
    }
}
