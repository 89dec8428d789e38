//! `latchkey::vault::names`: every identifier a request carries (tenant ids,
//! secret names, environments, tags, emails, free text, resource ids) plus
//! `Permission::parse`. Besides "never panics", an accepted value must obey the
//! rule its doc comment states, since services trust it without re-checking.
#![no_main]

use arbitrary::Arbitrary;
use latchkey::vault::{Permission, names};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    TenantId(&'a str),
    SecretName(&'a str),
    Environment(Option<&'a str>),
    Tags(Vec<String>),
    Email(&'a str),
    Text { what: &'a str, raw: &'a str, max: u16 },
    IsId(&'a str),
    Permission(&'a str),
}

fuzz_target!(|input: Input<'_>| match input {
    Input::TenantId(raw) => {
        if let Ok(t) = names::tenant_id(raw) {
            assert_eq!(t, raw);
            assert!((3..=63).contains(&t.len()), "{t:?}");
            assert!(t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{t:?}");
            assert!(!t.starts_with('-') && !t.ends_with('-'), "{t:?}");
        }
    }
    Input::SecretName(raw) => {
        if let Ok(n) = names::secret_name(raw) {
            assert_eq!(n, raw);
            assert!((1..=256).contains(&n.len()), "{n:?}");
            assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:@".contains(&b)), "{n:?}");
            assert!(!n.starts_with('/') && !n.ends_with('/') && !n.contains("//"), "{n:?}");
        }
    }
    Input::Environment(raw) => {
        if let Ok(e) = names::environment(raw) {
            assert!(e.len() <= 64, "{e:?}");
            assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)), "{e:?}");
        }
    }
    Input::Tags(raw) => {
        if let Ok(tags) = names::tags(&raw) {
            assert!(tags.len() <= 32 && tags.len() <= raw.len());
            for (i, t) in tags.iter().enumerate() {
                assert!(!t.is_empty() && t.len() <= 64 && t.trim() == t, "{t:?}");
                assert!(!t.chars().any(char::is_control), "{t:?}");
                assert!(!tags[..i].contains(t), "duplicate tag {t:?}");
            }
        }
    }
    Input::Email(raw) => match names::email(raw) {
        Ok(None) => assert!(raw.trim().is_empty(), "{raw:?}"),
        Ok(Some(e)) => {
            assert_eq!(e, raw.trim());
            assert!(e.len() <= 254 && e.bytes().all(|b| b.is_ascii_graphic()), "{e:?}");
            let (local, domain) = e.split_once('@').expect("one @");
            assert!(!local.is_empty() && local.len() <= 64 && !domain.contains('@'), "{e:?}");
            assert!(domain.contains('.') && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-')), "{e:?}");
        }
        Err(_) => {}
    },
    Input::Text { what, raw, max } => {
        if let Ok(t) = names::text(what, raw, max as usize) {
            assert!(t.len() <= max as usize);
            assert!(!t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{t:?}");
        }
    }
    Input::IsId(raw) => {
        let _ = names::is_id(raw);
    }
    Input::Permission(raw) => {
        if let Ok(p) = Permission::parse(raw) {
            assert_eq!(p.as_str(), raw);
        }
    }
});
