//! Route patterns: `"DELETE /accounts/*"` or `"/admin/*"` (any method). `*` matches any
//! run of characters, `/` included, and `?` one character, as in the policy file.

use http::Method;
use std::fmt;
use std::str::FromStr;
use wildmatch::WildMatch;

#[derive(Clone, Debug)]
pub struct RoutePattern {
    /// `None`: any method.
    method: Option<Method>,
    path: WildMatch,
    source: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RoutePatternError {
    #[error("expected `[METHOD] /path`, e.g. `DELETE /accounts/*`")]
    Shape,
    #[error("`{0}` is not an HTTP method")]
    Method(String),
}

impl FromStr for RoutePattern {
    type Err = RoutePatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_whitespace();
        let (method, path) = match (words.next(), words.next(), words.next()) {
            (Some(path), None, None) => (None, path),
            (Some(method), Some(path), None) => {
                let upper = method.to_ascii_uppercase();
                let m = Method::from_bytes(upper.as_bytes())
                    .map_err(|_| RoutePatternError::Method(method.into()))?;
                (Some(m), path)
            }
            _ => return Err(RoutePatternError::Shape),
        };
        if !path.starts_with('/') {
            return Err(RoutePatternError::Shape);
        }
        Ok(Self {
            method,
            path: WildMatch::new(path),
            source: s.trim().to_owned(),
        })
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl RoutePattern {
    /// Whether a request is under this pattern; `path` must be canonical
    /// ([`super::canonical::path`]), and a `GET` pattern covers `HEAD`.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| super::canonical::method_matches(m, method))
            && self.path.matches(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_and_path_globs() {
        let p: RoutePattern = "delete /accounts/*".parse().unwrap();
        assert!(p.matches(&Method::DELETE, "/accounts/42"));
        assert!(!p.matches(&Method::GET, "/accounts/42"));
        assert!(!p.matches(&Method::DELETE, "/users/42"));
        let any: RoutePattern = "/admin/*".parse().unwrap();
        assert!(any.matches(&Method::POST, "/admin/x/y"));
        assert_eq!(
            "DELETE accounts".parse::<RoutePattern>().unwrap_err(),
            RoutePatternError::Shape
        );
        assert!(matches!(
            "DEL{ETE /x".parse::<RoutePattern>().unwrap_err(),
            RoutePatternError::Method(_)
        ));
    }
}
