//! Who may do what on the server: tokens from `--token-file` (lines `TOKEN read|write`, `#`
//! comments), sent as `Authorization: Bearer TOKEN` or as the password of basic auth (which is
//! what Bazel and bazel-remote clients send for `https://user:TOKEN@host/`).
//!
//! Without a token file the server is open to everyone for reading and writing, as bazel-remote
//! without htpasswd is; `--anonymous-read` lets requests without credentials read.

use std::path::Path;

use base64::Engine;

use super::ServeError;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Right {
    /// GET and HEAD.
    Read,
    /// PUT as well.
    Write,
}

/// The outcome of checking a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// No or unknown credentials: 401.
    Unauthenticated(&'static str),
    /// Known credentials without the right: 403.
    Forbidden(&'static str),
}

/// The tokens the server accepts.
#[derive(Default)]
pub struct Tokens {
    tokens: Option<Vec<(String, Right)>>,
    anonymous_read: bool,
}

impl Tokens {
    /// Reads a token file; `None` means no authentication at all.
    pub fn load(path: Option<&Path>, anonymous_read: bool) -> Result<Tokens, ServeError> {
        let Some(path) = path else {
            return Ok(Tokens {
                tokens: None,
                anonymous_read,
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Tokens {
            tokens: Some(parse_tokens(path, &text)?),
            anonymous_read,
        })
    }

    /// Decides whether a request with this `Authorization` header may use `needed`.
    pub fn check(&self, authorization: Option<&str>, needed: Right) -> Decision {
        let Some(tokens) = &self.tokens else {
            return Decision::Allow;
        };
        let Some(presented) = authorization.and_then(presented_token) else {
            return if needed == Right::Read && self.anonymous_read {
                Decision::Allow
            } else {
                Decision::Unauthenticated("this cache needs a token: send Authorization: Bearer TOKEN (or basic auth with the token as password)\n")
            };
        };
        // Compare with every token, in constant time, so timing does not reveal a prefix.
        let mut granted = None;
        for (token, right) in tokens {
            if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
                granted = Some(*right);
            }
        }
        match granted {
            None => Decision::Unauthenticated("unknown token\n"),
            Some(right) if right < needed => {
                Decision::Forbidden("this token may only read; uploads need a write token\n")
            }
            Some(_) => Decision::Allow,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_token(header: &str) -> Option<String> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':').unwrap_or((&text, ""));
        return Some(if password.is_empty() { user } else { password }.to_string());
    }
    None
}

fn parse_tokens(path: &Path, text: &str) -> Result<Vec<(String, Right)>, ServeError> {
    let mut tokens = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| ServeError::TokenFile {
            path: path.to_path_buf(),
            line: line_idx + 1,
            reason: reason.to_string(),
        };
        let mut words = line.split_whitespace();
        let (Some(token), Some(right), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected `TOKEN read` or `TOKEN write`"));
        };
        let right = match right {
            "read" => Right::Read,
            "write" => Right::Write,
            _ => return Err(bad("the right must be `read` or `write`")),
        };
        tokens.push((token.to_string(), right));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(anonymous_read: bool) -> Tokens {
        Tokens {
            tokens: parse_tokens(Path::new("t"), "# team\nreader read\nwriter write\n").ok(),
            anonymous_read,
        }
    }

    #[test]
    fn rights_are_enforced() {
        let tokens = tokens(false);
        assert_eq!(
            tokens.check(Some("Bearer writer"), Right::Write),
            Decision::Allow
        );
        assert_eq!(
            tokens.check(Some("Bearer reader"), Right::Read),
            Decision::Allow
        );
        assert!(matches!(
            tokens.check(Some("Bearer reader"), Right::Write),
            Decision::Forbidden(_)
        ));
        assert!(matches!(
            tokens.check(Some("Bearer nobody"), Right::Read),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            tokens.check(None, Right::Read),
            Decision::Unauthenticated(_)
        ));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ci:writer")
        );
        assert_eq!(tokens.check(Some(&basic), Right::Write), Decision::Allow);
    }

    #[test]
    fn anonymous_read_allows_reads_only() {
        let tokens = tokens(true);
        assert_eq!(tokens.check(None, Right::Read), Decision::Allow);
        assert!(matches!(
            tokens.check(None, Right::Write),
            Decision::Unauthenticated(_)
        ));
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let error = parse_tokens(Path::new("tokens"), "good read\nbad admin\n")
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("tokens:2"), "{error}");
    }
}
