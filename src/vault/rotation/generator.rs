//! New values for rotations that are not given one: `length` characters of
//! an alphabet after an optional `prefix`, drawn from the OS's CSPRNG. A
//! secret without a generator keeps the shape of its current value (an
//! `sk_live_` prefix and the length after it).

use rand::Rng;
use rand::rngs::OsRng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub const DEFAULT_LENGTH: usize = 32;
const ALPHANUMERIC: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &str = "0123456789abcdef";
const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const SYMBOLS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&*+-.:=?@^_~";

/// How a rotation makes a value. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generator {
    /// Characters after the prefix: 8 to 256 (default 32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
    /// `alphanumeric` (default), `hex`, `base64url`, `symbols`, or the
    /// characters to draw from themselves (at least 2 distinct).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alphabet: Option<String>,
    /// Kept in front of the random part, e.g. `sk_live_` (at most 64 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Generator {
    /// Checks the settings (400 INVALID_REQUEST naming what is wrong).
    pub fn validate(&self) -> Result<()> {
        if let Some(n) = self.length
            && !(8..=256).contains(&n)
        {
            return Err(Error::InvalidRequest("generator.length must be between 8 and 256".into()));
        }
        if let Some(p) = &self.prefix
            && (p.chars().count() > 64 || p.chars().any(char::is_control))
        {
            return Err(Error::InvalidRequest("generator.prefix is at most 64 characters, none of them control characters".into()));
        }
        self.chars().map(|_| ())
    }

    fn chars(&self) -> Result<Vec<char>> {
        let set = match self.alphabet.as_deref().unwrap_or("alphanumeric") {
            "alphanumeric" => ALPHANUMERIC,
            "hex" => HEX,
            "base64url" => BASE64URL,
            "symbols" => SYMBOLS,
            custom => custom,
        };
        let mut chars: Vec<char> = set.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        if chars.len() < 2 || chars.len() > 1024 || chars.iter().any(|c| c.is_control()) {
            return Err(Error::InvalidRequest(
                "generator.alphabet is alphanumeric, hex, base64url, symbols, or 2 to 1024 distinct printable characters".into(),
            ));
        }
        Ok(chars)
    }

    /// A new value: the prefix, then `length` characters drawn uniformly
    /// from the alphabet with the OS's CSPRNG.
    pub fn generate(&self) -> Result<Zeroizing<String>> {
        self.validate()?;
        let chars = self.chars()?;
        let mut out = Zeroizing::new(self.prefix.clone().unwrap_or_default());
        for _ in 0..self.length.unwrap_or(DEFAULT_LENGTH) {
            out.push(chars[OsRng.gen_range(0..chars.len())]);
        }
        Ok(out)
    }

    /// A generator that makes values shaped like `current`: its prefix (the
    /// letters and separators up to the last `_` or `-` of a leading
    /// `word_word_` run), the length after it, and the narrowest alphabet its
    /// characters fit (hex, alphanumeric, base64url, else symbols).
    pub fn like(current: &str) -> Generator {
        let prefix = shaped_prefix(current);
        let rest = &current[prefix.len()..];
        let alphabet = if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            "hex"
        } else if rest.chars().all(|c| c.is_ascii_alphanumeric()) {
            "alphanumeric"
        } else if rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            "base64url"
        } else {
            "symbols"
        };
        let n = rest.chars().count();
        Generator {
            length: Some(if n < 8 { DEFAULT_LENGTH } else { n.min(256) }),
            alphabet: Some(alphabet.into()),
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
        }
    }
}

/// The leading `letters_` / `letters-` groups of a value (`sk_live_`, `ghp_`,
/// `xoxb-`), when at least 8 characters follow them.
fn shaped_prefix(value: &str) -> &str {
    let mut end = 0;
    let mut group = 0;
    for (i, c) in value.char_indices() {
        if c.is_ascii_alphanumeric() && (group > 0 || c.is_ascii_alphabetic()) {
            group += 1;
        } else if (c == '_' || c == '-') && group > 0 && group <= 8 {
            end = i + 1;
            group = 0;
        } else {
            break;
        }
        if i >= 24 {
            break;
        }
    }
    if value.len() - end >= 8 { &value[..end] } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_and_infers() {
        let g = Generator { length: Some(40), alphabet: Some("hex".into()), prefix: Some("tok_".into()) };
        let v = g.generate().unwrap();
        assert_eq!(v.len(), 44);
        assert!(v.starts_with("tok_") && v[4..].chars().all(|c| HEX.contains(c)));
        assert_ne!(*v, *g.generate().unwrap());
        let like = Generator::like("sk_live_abcDEF1234567890abcdef");
        assert_eq!(like.prefix.as_deref(), Some("sk_live_"));
        assert_eq!(like.length, Some(22));
        assert_eq!(like.alphabet.as_deref(), Some("alphanumeric"));
        assert_eq!(Generator::like("0123456789abcdef0123").alphabet.as_deref(), Some("hex"));
        assert_eq!(Generator::like("short").length, Some(DEFAULT_LENGTH));
        assert_eq!(Generator::like("postgres://u:p@db/x").prefix, None);
        assert!(Generator { length: Some(7), ..Default::default() }.validate().is_err());
        assert!(Generator { alphabet: Some("aaaa".into()), ..Default::default() }.validate().is_err());
        let custom = Generator { alphabet: Some("xy".into()), length: Some(16), prefix: None }.generate().unwrap();
        assert!(custom.chars().all(|c| c == 'x' || c == 'y'));
    }
}
