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

/// Tags: at most 32, each 1–64 printable characters that show (see
/// [`shows`]); duplicates are dropped.
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
        shows("each tag", t)?;
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
/// empty, then as [`text`], and it must show (see [`shows`]).
pub fn label(what: &str, raw: &str, max: usize) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid(what, "must not be empty"));
    }
    let name = text(what, name, max)?;
    shows(what, &name)?;
    Ok(name)
}

/// A name a person reads (in a list, a log, an approval page) must read as
/// what it is. One made only of characters that do not show would look
/// empty, or like another name; a bidirectional control reorders what
/// follows it, so `admin\u{202E}txt.exe` displays as another name (the
/// "Trojan Source" trick). Both are refused. Other invisible characters
/// between visible ones stay allowed: emoji sequences need the zero-width
/// joiner.
fn shows(what: &str, name: &str) -> Result<()> {
    if name.chars().any(is_bidi_control) {
        return Err(invalid(what, "must not hold bidirectional control characters (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069)"));
    }
    if name.chars().all(is_invisible) {
        return Err(invalid(what, "must hold a visible character"));
    }
    Ok(())
}

/// Embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), and
/// the marks that steer them (LRM, RLM, ALM).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that render as nothing, or as blank space: whitespace,
/// controls, Unicode's default-ignorable code points (zero-width spaces and
/// joiners, soft hyphen, variation selectors, tag characters, ...), and the
/// fillers that display as blanks (Hangul fillers, the blank braille pattern).
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
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

    const BIDI: [char; 12] = [
        '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
        '\u{2069}',
    ];
    const INVISIBLE: [char; 16] = [
        ' ',
        '\u{00A0}',
        '\u{00AD}',
        '\u{034F}',
        '\u{115F}',
        '\u{180E}',
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{2060}',
        '\u{2800}',
        '\u{3000}',
        '\u{3164}',
        '\u{FE0F}',
        '\u{FEFF}',
        '\u{E0041}',
    ];

    /// A validator's name and whether it accepts its input.
    type Validator = (&'static str, fn(&str) -> bool);

    /// Every validator of a name a person reads, each as a yes/no.
    fn name_validators() -> [Validator; 6] {
        [
            ("tenant id", |s: &str| tenant_id(s).is_ok()),
            ("secret name", |s: &str| secret_name(s).is_ok()),
            ("environment", |s: &str| environment(Some(s)).is_ok_and(|e| !e.is_empty())),
            ("tag", |s: &str| tags(&[s.to_owned()]).is_ok()),
            ("project name", |s: &str| label("project name", s, 128).is_ok()),
            ("key name", |s: &str| label("key name", s, 128).is_ok()),
        ]
    }

    /// A small deterministic generator (xorshift), so the property tests
    /// explore many inputs and fail the same way every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    #[test]
    fn a_bidirectional_control_anywhere_is_refused_by_every_name_validator() {
        for base in ["payments", "billing-2", "prod", "team a", "日本語", "ab"] {
            for c in BIDI {
                for at in 0..=base.chars().count() {
                    let mut name: Vec<char> = base.chars().collect();
                    name.insert(at, c);
                    let name: String = name.into_iter().collect();
                    for (what, ok) in name_validators() {
                        assert!(!ok(&name), "{what} accepted {name:?}");
                    }
                }
            }
        }
        let e = label("project name", "invoice\u{202E}fdp.exe", 128).unwrap_err();
        assert!(matches!(&e, Error::InvalidRequest(m) if m.starts_with("project name ") && m.contains("bidirectional")), "{e}");
    }

    #[test]
    fn a_name_made_only_of_invisible_characters_is_refused_by_every_name_validator() {
        let mut rng = Rng(0x5eed_1a7c_4e11);
        for _ in 0..2000 {
            let len = 1 + rng.next() % 6;
            let name: String = (0..len).map(|_| rng.pick(&INVISIBLE)).collect();
            for (what, ok) in name_validators() {
                assert!(!ok(&name), "{what} accepted {:?}", name.escape_unicode().to_string());
            }
        }
        let e = tags(&["\u{200B}\u{2060}".into()]).unwrap_err();
        assert!(matches!(&e, Error::InvalidRequest(m) if m.contains("visible")), "{e}");
    }

    #[test]
    fn visible_names_keep_their_invisible_joiners() {
        // An emoji sequence needs its zero-width joiners; a space inside a name is fine.
        for ok in ["\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}", "team a", "caf\u{00E9}", "\u{05E9}\u{05DC}\u{05D5}\u{05DD}"] {
            assert!(label("project name", ok, 128).is_ok(), "{ok:?}");
            assert!(tags(&[ok.to_owned()]).is_ok(), "{ok:?}");
        }
    }

    /// Random names over visible, invisible and bidirectional characters:
    /// a label or tag is accepted exactly when it holds no (disallowed)
    /// control, no bidirectional control and at least one visible character.
    #[test]
    fn labels_and_tags_accept_exactly_what_shows() {
        let alphabet: Vec<char> = "aZ9-_ .\u{00E9}\u{4E2D}\u{1F511}".chars().chain(INVISIBLE).chain(BIDI).chain(['\n', '\u{7}']).collect();
        let mut rng = Rng(0x0dd_ba11_cafe);
        for _ in 0..20_000 {
            let len = 1 + rng.next() % 8;
            let raw: String = (0..len).map(|_| rng.pick(&alphabet)).collect();
            let t = raw.trim();
            let shows = !t.is_empty() && !t.chars().any(is_bidi_control) && t.chars().any(|c| !is_invisible(c));
            // Labels, like all free text, may hold newlines and tabs; tags no control at all.
            let label_ok = shows && !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
            let tag_ok = shows && !t.chars().any(char::is_control);
            assert_eq!(label("key name", &raw, 128).is_ok(), label_ok, "label {:?}", raw.escape_unicode().to_string());
            assert_eq!(tags(std::slice::from_ref(&raw)).is_ok(), tag_ok, "tag {:?}", raw.escape_unicode().to_string());
        }
    }

    #[test]
    fn tags_are_bounded_and_deduplicated() {
        assert_eq!(tags(&["a".into(), "a".into(), " b ".into()]).unwrap(), vec!["a", "b"]);
        assert!(tags(&["".into()]).is_err());
        assert!(tags(&vec!["t".to_string(); 33]).is_err());
    }
}
