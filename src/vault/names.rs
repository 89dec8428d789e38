//! Identifiers parsed once at the edge. A value of these types is valid by
//! construction, so services never re-check them.

use crate::error::{Error, Result};

fn invalid(what: &str, rule: &str) -> Error {
    Error::InvalidRequest(format!("{what} {rule}"))
}

/// A tenant id: a lowercase slug, 3–63 characters, letters, digits and inner hyphens.
pub fn tenant_id(raw: &str) -> Result<String> {
    let ok = (3..=63).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-')
        && !raw.ends_with('-');
    if ok { Ok(raw.to_owned()) } else { Err(invalid("tenantId", "must be 3-63 lowercase letters, digits or inner hyphens")) }
}

/// A secret name: 1–256 of `A-Z a-z 0-9 _ - . / : @`, not starting or ending with `/`.
/// Path-like names (`production/stripe/API_KEY`) are allowed.
pub fn secret_name(raw: &str) -> Result<String> {
    let ok = (1..=256).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:@".contains(&b))
        && !raw.starts_with('/')
        && !raw.ends_with('/')
        && !raw.contains("//");
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid("name", "must be 1-256 characters of A-Z a-z 0-9 _ - . / : @ (no leading, trailing or double '/')"))
    }
}

/// An environment: 1–64 of `A-Z a-z 0-9 _ - .`; empty input means none.
pub fn environment(raw: Option<&str>) -> Result<String> {
    match raw {
        None | Some("") => Ok(String::new()),
        Some(e) if e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) => Ok(e.to_owned()),
        Some(_) => Err(invalid("environment", "must be 1-64 characters of A-Z a-z 0-9 _ - .")),
    }
}

/// Tags: at most 32, each 1–64 printable characters; duplicates are dropped.
pub fn tags(raw: &[String]) -> Result<Vec<String>> {
    if raw.len() > 32 {
        return Err(invalid("tags", "may hold at most 32 entries"));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for t in raw {
        let t = t.trim();
        if t.is_empty() || t.len() > 64 || t.chars().any(char::is_control) {
            return Err(invalid("each tag", "must be 1-64 printable characters"));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// A contact address, `local@domain`: up to 254 bytes, one `@`, a local part
/// of 1-64 printable ASCII characters without quotes, brackets or separators,
/// a domain of two or more dot-separated labels (ASCII letters, digits, inner
/// hyphens; an internationalised one in its `xn--` form). Blank means none.
pub fn email(raw: &str) -> Result<Option<String>> {
    let e = raw.trim();
    if e.is_empty() {
        return Ok(None);
    }
    let label = |l: &str| {
        (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-')
    };
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            (1..=64).contains(&local.len())
                && local.bytes().all(|b| b.is_ascii_graphic() && !b"\"(),:;<>@[\\]".contains(&b))
                && domain.contains('.')
                && domain.split('.').all(label)
        });
    if ok { Ok(Some(e.to_owned())) } else { Err(invalid("email", "must be an address like name@example.com")) }
}

/// Free text (descriptions, key names): bounded and without control characters
/// other than newlines and tabs.
pub fn text(what: &str, raw: &str, max: usize) -> Result<String> {
    if raw.len() > max || raw.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid(what, &format!("must be at most {max} bytes of printable text")));
    }
    Ok(raw.to_owned())
}

/// A label that must say something (project and key names): trimmed, not
/// empty, then as [`text`].
pub fn label(what: &str, raw: &str, max: usize) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid(what, "must not be empty"));
    }
    text(what, name, max)
}

/// A resource id as issued by this server (a UUID). Anything else cannot exist,
/// so it answers like a missing resource rather than a validation error.
pub fn is_id(raw: &str) -> bool {
    uuid::Uuid::parse_str(raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["acme", "my-project", "a1b", &"x".repeat(63)] {
            assert!(tenant_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "ab", "-abc", "abc-", "Acme", "a_b_c", "a b c", &"x".repeat(64), "ünï"] {
            assert!(tenant_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_names() {
        for ok in ["STRIPE_KEY", "production/stripe/API_KEY", "db.password", "user@host:5432"] {
            assert!(secret_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "trail/", "a//b", "sp ace", "semi;colon", "new\nline", &"x".repeat(257)] {
            assert!(secret_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["human@co.dev", "a.b+tag@mail.example.org", " ops@xn--bcher-kva.example ", "x@a.io"] {
            assert_eq!(email(ok).unwrap().as_deref(), Some(ok.trim()), "{ok}");
        }
        assert_eq!(email("  ").unwrap(), None);
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("a@{}.com", ["b".repeat(63), "c".repeat(63), "d".repeat(63), "e".repeat(63)].join("."));
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a@b@example.com",
            "a b@example.com",
            "\"a\"@example.com",
            "a@exa mple.com",
            "a@-example.com",
            "a@example..com",
            "a@example.com.",
            "<a@example.com>",
            "a@bücher.example",
            "a\n@example.com",
            &long_local,
            &long,
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_bounded_and_deduplicated() {
        assert_eq!(tags(&["a".into(), "a".into(), " b ".into()]).unwrap(), vec!["a", "b"]);
        assert!(tags(&["".into()]).is_err());
        assert!(tags(&vec!["t".to_string(); 33]).is_err());
    }
}
