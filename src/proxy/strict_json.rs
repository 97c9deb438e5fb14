//! JSON read the strict way for inspection: `serde_json`'s grammar (a lone surrogate such
//! as `"\ud800"` is an error), and an object with the same key twice is refused too. A
//! parser that keeps the first of two `"query"` keys would run what we did not inspect
//! (serde_json keeps the last), so neither is trusted.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `bytes` as one JSON document with no repeated keys.
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("the key `{key}` appears twice")));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        let v = parse(br#"{"query": "SELECT 1", "n": [1, -2, 3.5, true, null, {"a": "\u00e9"}]}"#)
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"query": "SELECT 1", "n": [1, -2, 3.5, true, null, {"a": "é"}]})
        );
    }

    #[test]
    fn refuses_lone_surrogates_repeated_keys_and_trailing_data() {
        assert!(parse(br#"{"query": "\ud800"}"#).is_err());
        assert!(parse(br#"{"query": "SELECT 1", "query": "DROP TABLE users"}"#).is_err());
        assert!(parse(br#"{"a": {"q": 1, "q": 2}}"#).is_err());
        assert!(parse(br#"{"query": "SELECT 1"} {"query": "DROP TABLE x"}"#).is_err());
        assert!(parse(b"\xef\xbb\xbf{}").is_err());
    }
}
