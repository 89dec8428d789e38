//! Redaction of secret values in output: one multi-pattern automaton over
//! every value and its encoded forms, each replaced by `[latchkey:NAME]`.
//!
//! PLACEHOLDER written against the shared plan's API so `stream.rs` builds
//! and tests before the integrator's version lands; on merge, theirs wins.

pub mod stream;

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;

/// Values shorter than this are not redacted: they would match everywhere.
const MIN_VALUE: usize = 3;

pub struct Redactor {
    automaton: Option<AhoCorasick>,
    /// Every pattern, by automaton pattern index.
    patterns: Vec<Vec<u8>>,
    labels: Vec<String>,
    longest: usize,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut labels = Vec::new();
        for (name, value) in values {
            if value.len() < MIN_VALUE {
                continue;
            }
            let label = format!("[latchkey:{name}]");
            for form in forms(value.as_bytes()) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                    labels.push(label.clone());
                }
            }
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let automaton = (!patterns.is_empty()).then(|| {
            AhoCorasickBuilder::new().match_kind(MatchKind::LeftmostLongest).build(&patterns).expect("patterns fit the automaton")
        });
        Redactor { automaton, patterns, labels, longest }
    }

    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// The longest pattern, in bytes.
    pub fn longest(&self) -> usize {
        self.longest
    }

    pub fn automaton(&self) -> Option<&AhoCorasick> {
        self.automaton.as_ref()
    }

    /// Every pattern (values and their encoded forms), by pattern index.
    pub fn patterns(&self) -> &[Vec<u8>] {
        &self.patterns
    }

    pub fn label(&self, pattern: usize) -> &str {
        &self.labels[pattern]
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(ac) = &self.automaton else { return Cow::Borrowed(bytes) };
        let mut out = Vec::new();
        let mut at = 0;
        for m in ac.find_iter(bytes) {
            out.extend_from_slice(&bytes[at..m.start()]);
            out.extend_from_slice(self.labels[m.pattern().as_usize()].as_bytes());
            at = m.end();
        }
        if at == 0 {
            return Cow::Borrowed(bytes);
        }
        out.extend_from_slice(&bytes[at..]);
        Cow::Owned(out)
    }
}

fn forms(v: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let hex_lower: String = v.iter().map(|b| format!("{b:02x}")).collect();
    let url: String = v
        .iter()
        .map(|&b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let mut all = vec![
        v.to_vec(),
        STANDARD.encode(v).into_bytes(),
        STANDARD_NO_PAD.encode(v).into_bytes(),
        URL_SAFE.encode(v).into_bytes(),
        URL_SAFE_NO_PAD.encode(v).into_bytes(),
        hex_lower.to_uppercase().into_bytes(),
        hex_lower.into_bytes(),
        url.into_bytes(),
    ];
    all.sort();
    all.dedup();
    all
}
