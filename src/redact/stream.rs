//! Redaction of a byte stream that arrives in reads of any size (a child's
//! stdout), with bounded memory: between reads at most `longest() - 1` bytes
//! are held back, the most a value (or an encoded form) split by a read can
//! have shown so far. A value split across reads is caught, and no prefix of
//! one is ever emitted: the output is exactly what [`Redactor::redact_bytes`]
//! makes of the whole stream, however it was cut.
//!
//! Why that holds: a match starting at `s` is at most `longest()` bytes, so
//! once `s + longest() <= buffered` every pattern that could start at `s` is
//! in view, and leftmost-longest picks the same one it would pick on the
//! whole stream. Of the last `longest() - 1` bytes, only those from the first
//! position where the rest of the read is the beginning of some pattern wait
//! for the next read (or [`StreamRedactor::finish`]); the bytes before it
//! cannot be part of any match, so a prompt such as `Password: ` is shown at
//! once rather than when more output comes.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::Redactor;

pub struct StreamRedactor {
    redactor: Arc<Redactor>,
    /// The patterns, sorted, to tell whether a tail may begin one.
    sorted: Vec<Zeroizing<Vec<u8>>>,
    /// Which bytes begin some pattern.
    first: [bool; 256],
    /// Bytes read but not yet emitted: at most `longest() - 1` between calls.
    pending: Vec<u8>,
}

impl StreamRedactor {
    pub fn new(redactor: Arc<Redactor>) -> Self {
        let mut sorted: Vec<Zeroizing<Vec<u8>>> = redactor.patterns().map(|p| Zeroizing::new(p.to_vec())).collect();
        sorted.sort_unstable_by(|a, b| a.as_slice().cmp(b.as_slice()));
        let mut first = [false; 256];
        for p in &sorted {
            if let Some(&b) = p.first() {
                first[b as usize] = true;
            }
        }
        StreamRedactor { redactor, sorted, first, pending: Vec::new() }
    }

    /// Whether `tail` is the beginning of some pattern: the patterns that
    /// begin with it sort from the first one not below it.
    fn may_begin_pattern(&self, tail: &[u8]) -> bool {
        if !tail.first().is_some_and(|&b| self.first[b as usize]) {
            return false;
        }
        let at = self.sorted.partition_point(|p| p.as_slice() < tail);
        self.sorted.get(at).is_some_and(|p| p.starts_with(tail))
    }

    /// Bytes held back now (for tests of the bound).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Takes one read's bytes and appends to `out` everything that can be
    /// emitted for certain, redacted.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.redactor.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        let hold = self.redactor.longest().saturating_sub(1);
        // Most reads are far longer than a value: scan them in place and
        // copy only the tail that waits, rather than the whole read.
        let whole: std::borrow::Cow<[u8]> = if self.pending.is_empty() {
            std::borrow::Cow::Borrowed(input)
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(input);
            std::borrow::Cow::Owned(joined)
        };
        let buf: &[u8] = &whole;
        // A match starting before `commit` is final: every pattern that could
        // start where it does is in view. From `commit` on, a position is
        // settled once the rest of the read cannot be the beginning of a
        // pattern: no match can start there that more bytes would change.
        let commit = buf.len().saturating_sub(hold);
        let mut at = 0;
        let mut keep_from = None;
        for m in self.redactor.find_iter(buf) {
            if m.start() >= commit
                && let Some(q) = (at.max(commit)..=m.start()).find(|&q| self.may_begin_pattern(&buf[q..]))
            {
                keep_from = Some(q);
                break;
            }
            out.extend_from_slice(&buf[at..m.start()]);
            out.extend_from_slice(self.redactor.label(m.pattern().as_usize()).as_bytes());
            at = m.end();
        }
        let keep_from =
            keep_from.unwrap_or_else(|| (at.max(commit)..buf.len()).find(|&q| self.may_begin_pattern(&buf[q..])).unwrap_or(buf.len()));
        out.extend_from_slice(&buf[at..keep_from]);
        let mut pending = match whole {
            std::borrow::Cow::Owned(mut v) => {
                v.drain(..keep_from);
                v
            }
            std::borrow::Cow::Borrowed(b) => b[keep_from..].to_vec(),
        };
        std::mem::swap(&mut self.pending, &mut pending);
    }

    /// The stream ended: emits what was held back, redacted.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let rest = std::mem::take(&mut self.pending);
        out.extend_from_slice(&self.redactor.redact_bytes(&rest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn redactor(values: &[(&str, &str)]) -> Arc<Redactor> {
        Arc::new(Redactor::new(values.iter().map(|(n, v)| (n.to_string(), v.to_string()))))
    }

    /// Streams `text` cut at `cuts` (ascending offsets); checks the bound on
    /// what is held between reads.
    fn streamed(r: &Arc<Redactor>, text: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut s = StreamRedactor::new(r.clone());
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([text.len()].iter()) {
            s.push(&text[from..cut], &mut out);
            assert!(s.held() < r.longest().max(1), "held {} of longest {}", s.held(), r.longest());
            from = cut;
        }
        s.finish(&mut out);
        out
    }

    fn whole(r: &Redactor, text: &[u8]) -> Vec<u8> {
        r.redact_bytes(text).into_owned()
    }

    const VALUE: &str = "sk_live_4f2a9c0d1e";

    fn sample() -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
        let hex: String = VALUE.bytes().map(|b| format!("{b:02x}")).collect();
        format!("token={VALUE}\nb64 {b64} hex {hex} url sk_live_4f2a9c0d1e%20 end {VALUE}").into_bytes()
    }

    #[test]
    fn a_value_split_at_every_offset_is_caught() {
        let r = redactor(&[("STRIPE", VALUE)]);
        let text = sample();
        let expected = whole(&r, &text);
        assert!(!String::from_utf8_lossy(&expected).contains("sk_live"), "{}", String::from_utf8_lossy(&expected));
        for cut in 0..=text.len() {
            assert_eq!(streamed(&r, &text, &[cut]), expected, "cut at {cut}");
        }
        for a in 0..=text.len() {
            for b in a..=text.len() {
                assert_eq!(streamed(&r, &text, &[a, b]), expected, "cuts at {a}, {b}");
            }
        }
        let bytewise: Vec<usize> = (1..text.len()).collect();
        assert_eq!(streamed(&r, &text, &bytewise), expected, "one byte per read");
    }

    #[test]
    fn encoded_forms_are_replaced_with_the_label() {
        let r = redactor(&[("K", VALUE)]);
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(VALUE);
        let hex: String = VALUE.bytes().map(|b| format!("{b:02X}")).collect();
        for form in [VALUE.to_string(), e, hex] {
            let text = format!("<{form}>");
            let cut = text.len() / 2;
            assert_eq!(streamed(&r, text.as_bytes(), &[cut]), b"<[latchkey:K]>", "{form}");
        }
        let with_space = redactor(&[("P", "pass word!")]);
        assert_eq!(streamed(&with_space, b"x=pass%20word%21;", &[5]), b"x=[latchkey:P];");
    }

    #[test]
    fn overlapping_values_redact_as_the_whole_would() {
        let r = redactor(&[("A", "abcdef"), ("B", "defghi"), ("C", "abcdefgh12"), ("D", "xyz")]);
        let text = b"..abcdefghi..abcdefgh12..defghi..xyzabcdef..abcdefgh1";
        let expected = whole(&r, text);
        assert_eq!(
            String::from_utf8_lossy(&expected),
            "..[latchkey:A]ghi..[latchkey:C]..[latchkey:B]..[latchkey:D][latchkey:A]..[latchkey:A]gh1"
        );
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                assert_eq!(streamed(&r, text, &[cut, cut2]), expected, "cuts at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn what_cannot_begin_a_value_is_not_held_back() {
        let r = redactor(&[("K", VALUE)]);
        let mut s = StreamRedactor::new(r.clone());
        let mut out = Vec::new();
        s.push(b"ready\nPassword: ", &mut out);
        assert_eq!(out, b"ready\nPassword: ", "a prompt shows at once");
        out.clear();
        s.push(b"token sk_live_4f", &mut out);
        assert_eq!(out, b"token ", "the beginning of the value waits");
        assert_eq!(s.held(), 10);
        out.clear();
        s.push(b"2a9c0d1e done", &mut out);
        assert_eq!(out, b"[latchkey:K] done");
        // A short value whole near the end of a read, with bytes after it
        // that begin nothing, is not let through either.
        let short = redactor(&[("S", "abc"), ("LONG", "a-much-longer-value-here")]);
        let mut s = StreamRedactor::new(short);
        out.clear();
        s.push(b"xx abcZ", &mut out);
        assert_eq!(out, b"xx [latchkey:S]Z");
        out.clear();
        s.push(b"xx a-much", &mut out);
        assert_eq!(out, b"xx ", "the beginning of the longer one waits");
    }

    /// Values that overlap each other and the text everywhere (a two-letter
    /// alphabet), random texts and random cuts: always what the whole makes.
    #[test]
    fn random_cuts_of_dense_text_redact_as_the_whole_would() {
        use rand::{Rng, SeedableRng};
        let r = redactor(&[("A", "aab"), ("B", "abab"), ("C", "bbabba"), ("D", "aaaaaaaab")]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        for _ in 0..3000 {
            let len = rng.gen_range(0..60);
            let text: Vec<u8> = (0..len).map(|_| if rng.gen_bool(0.5) { b'a' } else { b'b' }).collect();
            let mut cuts: Vec<usize> = (0..rng.gen_range(0..6)).map(|_| rng.gen_range(0..=len)).collect();
            cuts.sort_unstable();
            assert_eq!(streamed(&r, &text, &cuts), whole(&r, &text), "{} cut at {cuts:?}", String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn an_empty_redactor_passes_everything_through_at_once() {
        let r = redactor(&[]);
        assert!(r.is_empty());
        let mut s = StreamRedactor::new(r.clone());
        let mut out = Vec::new();
        s.push(b"partial sk_li", &mut out);
        assert_eq!(out, b"partial sk_li", "nothing held back");
        assert_eq!(s.held(), 0);
        s.finish(&mut out);
        assert_eq!(out, b"partial sk_li");
    }

    #[test]
    fn memory_stays_bounded_over_a_long_stream() {
        let r = redactor(&[("K", VALUE)]);
        let mut s = StreamRedactor::new(r.clone());
        let chunk = format!("{}{VALUE}", "x".repeat(4000)).into_bytes();
        let mut total = 0;
        for i in 0..500 {
            let mut out = Vec::new();
            s.push(&chunk[i % 7..], &mut out);
            total += out.len();
            assert!(s.held() < r.longest());
            assert!(!out.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()));
        }
        assert!(total > 1_000_000);
    }
}
