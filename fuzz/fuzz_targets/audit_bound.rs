//! Audit-log date bounds (`startDate` / `endDate`): RFC 3339 or `YYYY-MM-DD`.
//! Must answer an error, never panic (chrono date arithmetic, `expect`s).
#![no_main]

use latchkey::vault::audit::parse_bound;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let start = parse_bound("startDate", raw, false);
    let end = parse_bound("endDate", raw, true);
    // The same text parses the same way as a start and as an end bound, and
    // an end bound never lies before the start bound of the same text.
    assert_eq!(start.is_ok(), end.is_ok(), "{raw:?}");
    if let (Ok(s), Ok(e)) = (start, end) {
        assert!(e >= s, "{raw:?}: end {e} < start {s}");
    }
});
