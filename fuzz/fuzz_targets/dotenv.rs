//! `latchkey::dotenv`: `parse` never panics on any text, reports only line
//! numbers within the text, and what `write` makes of any (secret name,
//! value) pairs `parse` reads back exactly: the export of one vault is the
//! import of another.
#![no_main]

use arbitrary::Arbitrary;
use latchkey::dotenv;
use latchkey::vault::names;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Parse(&'a str),
    RoundTrip(Vec<(String, String)>),
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Parse(text) => match dotenv::parse(text) {
        Ok(entries) => {
            for (name, _) in &entries {
                assert!(names::secret_name(name).is_ok(), "{name:?}");
            }
        }
        Err(lines) => {
            assert!(!lines.is_empty());
            let last = text.lines().count().max(1) + 1;
            for l in &lines {
                assert!(l.line >= 1 && l.line <= last, "line {} of {last}", l.line);
            }
        }
    },
    Input::RoundTrip(pairs) => {
        // Valid, distinct names (a name given twice is an error by design).
        let mut seen = std::collections::HashSet::new();
        let entries: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(n, _)| names::secret_name(n).is_ok() && seen.insert(n.clone()))
            .collect();
        let text = dotenv::write(&entries);
        assert_eq!(dotenv::parse(&text).expect("written text parses"), entries);
    }
});
