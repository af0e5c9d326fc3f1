//! Webhook signatures: HMAC-SHA256, hex, and a comparison that takes as long for a near miss
//! as for a wild guess, so a valid signature cannot be learned byte by byte from timings.

use aws_lc_rs::{constant_time, hmac};

/// A signing key for HMAC-SHA256.
pub fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    for part in parts {
        context.update(part);
    }
    context.sign()
}

/// Lower-case hex, two digits a byte: how signatures travel in headers.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Hex in either case (surrounding whitespace ignored) back to bytes; `None` when empty, of odd
/// length, or not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().as_bytes();
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

/// Constant-time equality of two signatures.
pub fn same(expected: &[u8], given: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(expected, given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(to_hex(&bytes), "000fa5ff");
        assert_eq!(from_hex("000FA5ff").as_deref(), Some(&bytes[..]));
        for bad in ["", "0", "zz", "0g", "+1"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn signatures_match_only_their_message_and_key() {
        let tag = hmac_sha256(&key(b"secret"), &[b"t.", b"body"]);
        // Parts are concatenated: signing in pieces equals signing the whole.
        let again = hmac_sha256(&key(b"secret"), &[b"t.body"]);
        assert!(same(tag.as_ref(), again.as_ref()));
        let other = hmac_sha256(&key(b"secret2"), &[b"t.body"]);
        assert!(!same(tag.as_ref(), other.as_ref()));
        assert!(!same(tag.as_ref(), &tag.as_ref()[..31]));
    }
}
