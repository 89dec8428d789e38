//! `.env` text: [`parse`] what people and tools write, [`write`] what every
//! dotenv parser reads back exactly.
//!
//! # What [`parse`] accepts
//!
//! One `NAME=value` per entry; blank lines and `#` comment lines; an optional
//! `export ` before the name; spaces around `=`. Names are secret names
//! (`vault::names::secret_name`). Values:
//! - unquoted: the rest of the line, trimmed, up to a `#` that follows
//!   whitespace (a trailing comment), as python-dotenv reads it;
//! - `'single quoted'`: literal, no escapes, may span lines;
//! - `"double quoted"`: may span lines; the escapes python-dotenv knows
//!   (`\\ \' \" \n \r \t \a \b \f \v`) are decoded, any other backslash is
//!   kept as written.
//!
//! After a closing quote only whitespace and a `# comment` may follow. A name
//! given twice is an error (dotenv parsers disagree on which one wins).
//! Every bad line is reported by number; messages never quote the text,
//! which may hold values.
//!
//! # What [`write`] writes
//!
//! `NAME='value'` when the value holds no `'`, no carriage return, no `\\`
//! and does not end in `\`: every parser reads that literally, newlines and
//! single backslashes included. Otherwise
//! `NAME="value"` with `\`, `"`, newline and carriage return escaped
//! (`\\ \" \n \r`), which this parser and python-dotenv read back exactly.
//! Node's `dotenv` decodes only `\n` and `\r` in double quotes, so it reads a
//! value holding `'` and (`"` or `\`), or `\\`, or a trailing `\`, with
//! those escapes left in: no quoting exists that it reads back for such a
//! value. python-dotenv (1.x) expands `${NAME}` in every value, single-quoted ones included, unless
//! called with `interpolate=False`; it has no escape for it, so a value
//! holding `${` reads back exactly there only without interpolation
//! (checked: every other value of `tests/environments.rs` reads back exactly).

mod parse;
mod write;

pub use parse::parse;
pub use write::write;

#[cfg(test)]
mod tests;
