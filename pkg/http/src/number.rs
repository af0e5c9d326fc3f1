//! Integers in JSON bodies as JSON Schema counts them: `3` and `3.0` are both the integer 3
//! (a number with no fraction), so a client that writes whole numbers as floats is not
//! refused. Use with `#[serde(deserialize_with = "…")]`.

use serde::Deserializer;
use serde::de::{self, Visitor};

struct Integer;

impl Visitor<'_> for Integer {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::custom("is too large"))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
        // 2^63 is exactly representable; everything below it with no fraction fits in i64.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if value.fract() != 0.0 || !value.is_finite() {
            return Err(E::custom("must be a whole number"));
        }
        if !(-LIMIT..LIMIT).contains(&value) {
            return Err(E::custom("is too large"));
        }
        #[allow(clippy::cast_possible_truncation)]
        Ok(value as i64)
    }
}

/// An `i64` written as `3` or `3.0`.
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(Integer)
}

/// An optional `i64` written as `3` or `3.0`; `null` is `None`.
pub fn optional_integer<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    struct Optional;
    impl<'de> Visitor<'de> for Optional {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            integer(d).map(Some)
        }
    }
    deserializer.deserialize_option(Optional)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::integer")]
        n: i64,
        #[serde(default, deserialize_with = "super::optional_integer")]
        m: Option<i64>,
    }

    fn parse(json: &str) -> Result<(i64, Option<i64>), String> {
        serde_json::from_str::<Body>(json)
            .map(|b| (b.n, b.m))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_integers_however_written() {
        assert_eq!(parse(r#"{"n": 3}"#).unwrap(), (3, None));
        assert_eq!(parse(r#"{"n": 3.0, "m": -2.0}"#).unwrap(), (3, Some(-2)));
        assert_eq!(parse(r#"{"n": -1e3, "m": null}"#).unwrap(), (-1000, None));
        assert!(parse(r#"{"n": 3.5}"#).is_err());
        assert!(parse(r#"{"n": "3"}"#).is_err());
        assert!(parse(r#"{"n": 9223372036854775808}"#).is_err());
        assert!(parse(r#"{"n": 1e19}"#).is_err());
        assert_eq!(parse(r#"{"n": 9223372036854775807}"#).unwrap().0, i64::MAX);
    }
}
