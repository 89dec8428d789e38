//! The dotenv writer (see the module's doc for the quoting).

use zeroize::Zeroizing;

/// The entries as `.env` text, one per entry (a multi-line single-quoted
/// value spans lines), in the order given. The names must be secret names.
pub fn write<N: AsRef<str>, V: AsRef<str>>(entries: &[(N, V)]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (name, value) in entries {
        let value = value.as_ref();
        out.push_str(name.as_ref());
        out.push('=');
        if literal(value) {
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push('"');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('\n');
    }
    out
}

/// Whether every parser reads `'value'` as the value itself: no quote to end
/// it early, no carriage return (node's dotenv turns line ends into LF), no
/// two backslashes in a row and no trailing backslash (python-dotenv decodes
/// `\\` and `\'` inside single quotes).
fn literal(value: &str) -> bool {
    !value.contains(['\'', '\r']) && !value.contains("\\\\") && !value.ends_with('\\')
}
