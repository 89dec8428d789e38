//! Replacing secret values, and the forms they are commonly re-encoded in,
//! with `[latchkey:NAME]` wherever output might carry them: a child's output
//! under `latchkey run`, a proxied answer, a tool result (the leak guard).
//!
//! One Aho-Corasick automaton holds every form of every value, so the cost
//! per byte does not grow with the number of values. When every form is at
//! least [`WINDOW`] bytes long (any real credential), the automaton is not
//! run over every byte: see [`Sampler`].

pub mod stream;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
use base64::Engine;
use zeroize::Zeroizing;

/// Values shorter than this are not looked for: a one- or two-character
/// value would blank out ordinary text everywhere.
pub const MIN_VALUE_BYTES: usize = 3;

/// Shortest slice of a value looked for inside a longer base64 text: shorter
/// ones (fewer than eight base64 characters) would match by chance.
const MIN_ALIGNED_BYTES: usize = 6;

/// The forms a value is looked for in: itself; base64, standard and
/// URL-safe, and also as it appears inside the base64 of a
/// longer text (`Basic` auth, an echoed body), where it may start at any of
/// three alignments; hex in either case; and URL-encoded as paths, queries
/// and forms write it.
fn forms(value: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let bytes = value.as_bytes();
    let hex_lower: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Unpadded base64 only: the padded form begins with it, so the longest
    // match leaves at most the `=` padding, which tells nothing, and the
    // automaton stays smaller (and faster).
    let mut out = vec![
        value.to_owned(),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex_lower.to_uppercase(),
        hex_lower,
        percent_encoded(value, b"-._~", false),
        percent_encoded(value, b"-._~/", false),
        percent_encoded(value, b"-._~", true),
        percent_encoded(value, b"*-._", true),
    ];
    // Inside a longer base64 text, the value's bytes from the first group
    // boundary on encode alike, whatever came before them.
    for skip in 0..3 {
        let rest = &bytes[skip.min(bytes.len())..];
        let whole = &rest[..rest.len() - rest.len() % 3];
        if whole.len() >= MIN_ALIGNED_BYTES {
            out.push(STANDARD_NO_PAD.encode(whole));
            out.push(URL_SAFE_NO_PAD.encode(whole));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Percent-encodes every byte but ASCII letters, digits and `keep`; with
/// `plus`, a space is `+` (query strings and forms).
fn percent_encoded(value: &str, keep: &[u8], plus: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else if plus && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bytes of text the sampler hashes at once.
pub const WINDOW: usize = 8;

/// Most windows a sampler's set holds: past this (tens of thousands of
/// values) its filter would pass nearly everything, and the automaton scans
/// every byte instead.
const MAX_WINDOWS: usize = 1 << 20;

/// A skip-ahead filter in front of the automaton. Every form is at least
/// `shortest` bytes long, so any occurrence of one contains some window of
/// [`WINDOW`] bytes starting at a multiple of `stride = shortest - WINDOW + 1`
/// past the scan's start, and that window is one of the form's own. So the
/// scan hashes one window per `stride` bytes (one in 40-odd for a typical
/// key) against a bit set of every window of every form; only where one is
/// present does the automaton try, anchored, the `stride` positions a
/// match could start at. The result is exactly the unanchored leftmost-longest
/// search's (the tests check it against one), several times faster.
#[derive(Clone)]
struct Sampler {
    stride: usize,
    bits: Vec<u64>,
    shift: u32,
}

impl Sampler {
    fn new<'p>(patterns: impl Iterator<Item = &'p [u8]> + Clone) -> Option<Self> {
        let shortest = patterns.clone().map(<[u8]>::len).min()?;
        if shortest < WINDOW {
            return None;
        }
        let windows: usize = patterns.clone().map(|p| p.len() - WINDOW + 1).sum();
        if windows > MAX_WINDOWS {
            return None;
        }
        // About 1 set bit in 16: a window of ordinary text passes by chance
        // rarely enough that the anchored tries cost next to nothing.
        let size = (windows * 16).next_power_of_two().max(1 << 12);
        let mut sampler = Sampler { stride: shortest - WINDOW + 1, bits: vec![0; size / 64], shift: 64 - size.trailing_zeros() };
        for p in patterns {
            for w in p.windows(WINDOW) {
                let h = sampler.slot(w);
                sampler.bits[h / 64] |= 1 << (h % 64);
            }
        }
        Some(sampler)
    }

    fn slot(&self, window: &[u8]) -> usize {
        let x = u64::from_le_bytes(window.try_into().expect("WINDOW bytes"));
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn may_hold(&self, window: &[u8]) -> bool {
        let h = self.slot(window);
        self.bits[h / 64] >> (h % 64) & 1 == 1
    }

    /// The leftmost-longest match starting at or after `from`.
    fn find(&self, ac: &AhoCorasick, hay: &[u8], mut from: usize) -> Option<aho_corasick::Match> {
        // No match starts in `from..=j - stride`: the windows before `j` ruled them out.
        let mut j = from + self.stride - 1;
        while j + WINDOW <= hay.len() {
            if self.may_hold(&hay[j..j + WINDOW]) {
                let found = (from..=j).find_map(|s| ac.find(Input::new(hay).range(s..).anchored(Anchored::Yes)));
                if found.is_some() {
                    return found;
                }
            }
            from = j + 1;
            j += self.stride;
        }
        None
    }
}

/// Finds every form of a set of named values and replaces each with its label.
#[derive(Clone, Default)]
pub struct Redactor {
    automaton: Option<AhoCorasick>,
    /// When present, `automaton` is anchored and searched through this.
    sampler: Option<Sampler>,
    /// The label of each pattern, by pattern index.
    labels: Vec<Arc<str>>,
    /// The patterns themselves, for a streaming redactor to tell whether the
    /// end of a read may begin one (`stream.rs`); shared by clones.
    patterns: Arc<[Zeroizing<String>]>,
    longest: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("patterns", &self.labels.len()).finish()
    }
}

impl Redactor {
    /// A redactor for these `(name, value)` pairs. When two values share a
    /// form, the longer match wins (leftmost-longest), so a value that
    /// contains another is replaced whole.
    pub fn new(values: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut patterns: Vec<Zeroizing<String>> = Vec::new();
        let mut labels = Vec::new();
        for (name, value) in values {
            let value = Zeroizing::new(value);
            if value.len() < MIN_VALUE_BYTES {
                continue;
            }
            let label: Arc<str> = Arc::from(format!("[latchkey:{name}]"));
            for form in forms(&value) {
                patterns.push(Zeroizing::new(form));
                labels.push(label.clone());
            }
        }
        if patterns.is_empty() {
            return Redactor::default();
        }
        let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let sampler = Sampler::new(patterns.iter().map(|p| p.as_bytes()));
        // A full DFA without a prefilter: the patterns of twenty values start
        // with nearly every byte, so a prefilter only interrupts the scan
        // (`latchkey run` passes every byte a child writes through here).
        let automaton = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .prefilter(false)
            .start_kind(if sampler.is_some() { StartKind::Anchored } else { StartKind::Unanchored })
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.as_bytes()))
            .expect("a few thousand literal patterns always build");
        Redactor { automaton: Some(automaton), sampler, labels, patterns: patterns.into(), longest }
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// The longest pattern in bytes: a streaming redactor holds back one
    /// byte less than this between reads, so no value slips through split.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Every match in `hay`, leftmost-longest, not overlapping, in order.
    pub fn find_iter<'h>(&'h self, hay: &'h [u8]) -> impl Iterator<Item = aho_corasick::Match> + 'h {
        let mut whole = match (&self.automaton, &self.sampler) {
            (Some(ac), None) => Some(ac.find_iter(hay)),
            _ => None,
        };
        let mut from = 0;
        std::iter::from_fn(move || {
            if let Some(all) = &mut whole {
                return all.next();
            }
            let (ac, sampler) = (self.automaton.as_ref()?, self.sampler.as_ref()?);
            let m = sampler.find(ac, hay, from)?;
            from = m.end();
            Some(m)
        })
    }

    /// Every pattern (each form of each value).
    pub fn patterns(&self) -> impl Iterator<Item = &[u8]> {
        self.patterns.iter().map(|p| p.as_bytes())
    }

    /// `[latchkey:NAME]` for a pattern the automaton reported.
    pub fn label(&self, pattern: usize) -> &str {
        &self.labels[pattern]
    }

    /// The text with every form of every value replaced.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Every pattern and label is UTF-8, and a UTF-8 pattern can only
            // match at a character boundary of UTF-8 text.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8(bytes).expect("replacing UTF-8 by UTF-8 at boundaries")),
        }
    }

    /// The bytes with every form of every value replaced.
    pub fn redact_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        let mut found = self.find_iter(bytes).peekable();
        if found.peek().is_none() {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for m in found {
            out.extend_from_slice(&bytes[at..m.start()]);
            out.extend_from_slice(self.labels[m.pattern().as_usize()].as_bytes());
            at = m.end();
        }
        out.extend_from_slice(&bytes[at..]);
        Cow::Owned(out)
    }

    /// Whether any form of any value occurs in the bytes.
    pub fn finds(&self, bytes: &[u8]) -> bool {
        self.find_iter(bytes).next().is_some()
    }
}

/// The values of non-`reveal` secrets a request (REST, MCP over HTTP) or a
/// session (MCP over stdio) has opened: the leak guard redacts them from
/// everything that request or session answers. Clones share one set.
#[derive(Clone, Default)]
pub struct Touched(Arc<Mutex<Vec<Named>>>);

/// A value and the name it is redacted as.
type Named = (String, Zeroizing<String>);

impl std::fmt::Debug for Touched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Touched").field(&self.len()).finish()
    }
}

impl Touched {
    /// Remembers a value opened under this name (once per distinct value).
    pub fn add(&self, name: &str, value: &str) {
        let mut set = self.0.lock().expect("not poisoned");
        if !set.iter().any(|(_, v)| v.as_str() == value) {
            set.push((name.to_owned(), Zeroizing::new(value.to_owned())));
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A redactor for everything touched so far; empty (and free) when nothing was.
    pub fn redactor(&self) -> Redactor {
        let set = self.0.lock().expect("not poisoned");
        if set.is_empty() {
            return Redactor::default();
        }
        Redactor::new(set.iter().map(|(n, v)| (n.clone(), v.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> Redactor {
        Redactor::new([(name.to_owned(), value.to_owned())])
    }

    #[test]
    fn every_form_is_replaced() {
        let r = one("API_KEY", "sk_live/abc+123=?");
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        for form in [
            "sk_live/abc+123=?".to_owned(),
            STANDARD.encode("sk_live/abc+123=?"),
            URL_SAFE_NO_PAD.encode("sk_live/abc+123=?"),
            "sk_live/abc+123=?".bytes().map(|b| format!("{b:02x}")).collect(),
            "sk_live/abc+123=?".bytes().map(|b| format!("{b:02X}")).collect(),
            "sk_live%2Fabc%2B123%3D%3F".to_owned(),
            "sk_live/abc%2B123%3D%3F".to_owned(),
        ] {
            let text = format!("before {form} after");
            // Base64's padding may stay behind the label: it tells nothing.
            let padding = "=".repeat(form.len() - form.trim_end_matches('=').len());
            assert_eq!(r.redact(&text), format!("before [latchkey:API_KEY]{padding} after"), "form {form}");
        }
    }

    #[test]
    fn a_value_inside_a_longer_base64_text_or_a_query_is_found_at_any_alignment() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let value = "CNRY p@ss/w+rd:0123456789abcdef";
        let r = one("KEY", value);
        for before in ["", "u:", "svc:", "Authorization: Basic x", "12345"] {
            for engine in [&STANDARD, &URL_SAFE] {
                let text = engine.encode(format!("{before}{value} and more"));
                assert!(r.finds(text.as_bytes()), "after {before:?}: {text}");
            }
        }
        let query = "GET /echo?key=CNRY+p%40ss%2Fw%2Brd%3A0123456789abcdef&q=1";
        assert_eq!(r.redact(query), "GET /echo?key=[latchkey:KEY]&q=1");
    }

    #[test]
    fn the_longer_of_two_overlapping_values_wins_and_text_without_values_is_borrowed() {
        let r = Redactor::new([("SHORT".to_owned(), "abcd".to_owned()), ("LONG".to_owned(), "abcdefgh".to_owned())]);
        assert_eq!(r.redact("x abcdefgh y abcd z"), "x [latchkey:LONG] y [latchkey:SHORT] z");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert!(one("X", "ab").is_empty(), "values under three bytes are not looked for");
        assert_eq!(Redactor::default().redact("abc"), "abc");
    }

    /// The sampled search finds exactly what an unanchored leftmost-longest
    /// search over every byte finds: texts stitched from pieces of the
    /// values' forms (whole, cut, overlapping) and noise, on values long
    /// enough for the sampler and too short for it.
    #[test]
    fn the_sampled_search_finds_what_a_full_scan_finds() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let sets: [&[&str]; 4] = [
            &["sk_live_4f2a9c0d1e7b", "p@ss w/rd+12345678", "0123456789abcdef0123"],
            &["abcdefgh", "abcdefghij", "cdefghijkl"],
            &["tiny", "sk_live_4f2a9c0d1e7b"],
            &["aaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaab"],
        ];
        for values in sets {
            let r = Redactor::new(values.iter().enumerate().map(|(i, v)| (format!("V{i}"), v.to_string())));
            let forms: Vec<Vec<u8>> = r.patterns().map(<[u8]>::to_vec).collect();
            let full = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&forms).expect("builds");
            let expect_sampled = values.iter().all(|v| v.len() >= WINDOW);
            assert_eq!(r.sampler.is_some(), expect_sampled, "{values:?}");
            for _ in 0..400 {
                let mut text = Vec::new();
                for _ in 0..next(12) {
                    let form = &forms[next(forms.len())];
                    match next(4) {
                        0 => text.extend_from_slice(form),
                        1 => text.extend_from_slice(&form[next(form.len())..]),
                        2 => text.extend_from_slice(&form[..next(form.len())]),
                        _ => text.extend((0..next(20)).map(|_| b"ab =%0aZ"[next(8)])),
                    }
                }
                let got: Vec<_> = r.find_iter(&text).map(|m| (m.start(), m.end(), m.pattern())).collect();
                let want: Vec<_> = full.find_iter(&text).map(|m| (m.start(), m.end(), m.pattern())).collect();
                assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&text));
            }
        }
    }

    #[test]
    fn touched_values_make_one_redactor() {
        let t = Touched::default();
        assert!(t.redactor().is_empty());
        t.add("A", "first-value");
        t.clone().add("B", "second-value");
        t.add("A", "first-value");
        assert_eq!(t.len(), 2);
        assert_eq!(t.redactor().redact("first-value second-value"), "[latchkey:A] [latchkey:B]");
    }
}
