//! Whether a rule's `match` accepts a request, and if not, which criterion refused it.

use std::fmt;

use serde_json::Value;

use super::model::{MatchInput, RuleMatch};

/// The first criterion of a rule that a request failed, in the order they are checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    Action {
        pattern: String,
        actual: String,
    },
    Resource {
        pattern: String,
        actual: String,
    },
    Client {
        allowed: Vec<String>,
        actual: String,
    },
    ContextMissing {
        key: String,
    },
    ContextDiffers {
        key: String,
        expected: Value,
        actual: Value,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Action { pattern, actual } => {
                write!(f, "action {actual:?} does not match {pattern:?}")
            }
            Mismatch::Resource { pattern, actual } => {
                write!(f, "resource {actual:?} does not match {pattern:?}")
            }
            Mismatch::Client { allowed, actual } => {
                write!(f, "client {actual:?} is not in [{}]", allowed.join(", "))
            }
            Mismatch::ContextMissing { key } => write!(f, "context has no key {key:?}"),
            Mismatch::ContextDiffers {
                key,
                expected,
                actual,
            } => {
                write!(f, "context {key:?} is {actual}, rule wants {expected}")
            }
        }
    }
}

impl RuleMatch {
    /// `Ok` when every present criterion accepts `input`.
    pub fn check(&self, input: &MatchInput<'_>) -> Result<(), Mismatch> {
        if let Some(g) = &self.action
            && !g.matches(input.action)
        {
            return Err(Mismatch::Action {
                pattern: g.to_string(),
                actual: input.action.to_owned(),
            });
        }
        if let Some(g) = &self.resource
            && !g.matches(input.resource)
        {
            return Err(Mismatch::Resource {
                pattern: g.to_string(),
                actual: input.resource.to_owned(),
            });
        }
        if let Some(allowed) = &self.client
            && !allowed.iter().any(|c| c == input.client)
        {
            return Err(Mismatch::Client {
                allowed: allowed.clone(),
                actual: input.client.to_owned(),
            });
        }
        for (key, expected) in &self.context {
            match input.context.get(key) {
                None => return Err(Mismatch::ContextMissing { key: key.clone() }),
                Some(actual) if !json_eq(expected, actual) => {
                    return Err(Mismatch::ContextDiffers {
                        key: key.clone(),
                        expected: expected.clone(),
                        actual: actual.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn matches(&self, input: &MatchInput<'_>) -> bool {
        self.check(input).is_ok()
    }
}

/// JSON equality where numbers compare by value, so `rows = 1200` in TOML matches a
/// request's `1200.0`, which `serde_json::Number`'s own `==` would not.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        _ => a == b,
    }
}
