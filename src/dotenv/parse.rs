//! The dotenv parser (see the module's doc for the format).

use std::collections::HashMap;

use crate::error::LineError;

/// At most this many bad lines are reported; a text with more is wrong throughout.
const MAX_ERRORS: usize = 100;

/// The entries of a `.env` text in order, or every bad line (1-based).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<LineError>> {
    // A leading byte-order mark is no part of the first name; CRLF line
    // ends read as LF; a carriage return alone is kept.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser { chars: crlf_to_lf(&text.chars().collect::<Vec<_>>()), pos: 0, line: 1 };
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut errors = Vec::new();
    while !p.at_end() && errors.len() < MAX_ERRORS {
        let line = p.line;
        match p.entry() {
            Ok(None) => {}
            Ok(Some((name, value))) => {
                if let Some(first) = first_line.get(&name) {
                    errors.push(LineError { line, message: format!("this name is also given on line {first}: give each name once") });
                } else {
                    first_line.insert(name.clone(), line);
                    entries.push((name, value));
                }
            }
            Err(Bad { message, fatal }) => {
                errors.push(LineError { line, message: message.to_owned() });
                if fatal {
                    break;
                }
                p.skip_line();
            }
        }
    }
    if errors.is_empty() { Ok(entries) } else { Err(errors) }
}

fn crlf_to_lf(chars: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len());
    for (i, c) in chars.iter().enumerate() {
        if *c == '\r' && chars.get(i + 1) == Some(&'\n') {
            continue;
        }
        out.push(*c);
    }
    out
}

struct Bad {
    message: &'static str,
    /// The rest of the text cannot be read line by line (an unclosed quote).
    fatal: bool,
}

fn bad(message: &'static str) -> Bad {
    Bad { message, fatal: false }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    /// Past the end of the current line (its newline included).
    fn skip_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    /// Whitespace, then a comment or nothing, to the end of the line.
    fn end_of_line(&mut self) -> Result<(), Bad> {
        self.skip_blanks();
        match self.peek() {
            None | Some('\n') | Some('#') => {
                self.skip_line();
                Ok(())
            }
            Some(_) => Err(bad("only whitespace or a # comment may follow a closing quote")),
        }
    }

    /// One line's entry: `None` for a blank or comment line.
    fn entry(&mut self) -> Result<Option<(String, String)>, Bad> {
        self.skip_blanks();
        match self.peek() {
            None => return Ok(None),
            Some('\n') | Some('#') => {
                self.skip_line();
                return Ok(None);
            }
            _ => {}
        }
        let mut name = self.word();
        if name == "export" && matches!(self.peek(), Some(' ' | '\t')) {
            self.skip_blanks();
            name = self.word();
        }
        self.skip_blanks();
        if self.peek() != Some('=') {
            return Err(bad("expected NAME=value"));
        }
        self.pos += 1;
        if crate::vault::names::secret_name(&name).is_err() {
            return Err(bad("the name must be 1-256 characters of A-Z a-z 0-9 _ - . / : @ (no leading, trailing or double '/')"));
        }
        self.skip_blanks();
        let value = match self.peek() {
            Some('\'') => {
                self.pos += 1;
                let v = self.single_quoted()?;
                self.end_of_line()?;
                v
            }
            Some('"') => {
                self.pos += 1;
                let v = self.double_quoted()?;
                self.end_of_line()?;
                v
            }
            _ => self.unquoted(),
        };
        Ok(Some((name, value)))
    }

    /// A name: up to `=`, whitespace or the end of the line.
    fn word(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '=' || c == ' ' || c == '\t' || c == '\n' {
                break;
            }
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn single_quoted(&mut self) -> Result<String, Bad> {
        let mut v = String::new();
        loop {
            match self.bump() {
                None => return Err(Bad { message: "a single-quoted value is never closed", fatal: true }),
                Some('\'') => return Ok(v),
                Some(c) => v.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, Bad> {
        let unclosed = Bad { message: "a double-quoted value is never closed", fatal: true };
        let mut v = String::new();
        loop {
            match self.bump() {
                None => return Err(unclosed),
                Some('"') => return Ok(v),
                Some('\\') => match self.peek() {
                    None => return Err(unclosed),
                    Some(e) => {
                        let decoded = match e {
                            '\\' => Some('\\'),
                            '\'' => Some('\''),
                            '"' => Some('"'),
                            'n' => Some('\n'),
                            'r' => Some('\r'),
                            't' => Some('\t'),
                            'a' => Some('\u{7}'),
                            'b' => Some('\u{8}'),
                            'f' => Some('\u{c}'),
                            'v' => Some('\u{b}'),
                            _ => None,
                        };
                        match decoded {
                            Some(d) => {
                                self.pos += 1;
                                v.push(d);
                            }
                            // Kept as written; the next character is read on its own.
                            None => v.push('\\'),
                        }
                    }
                },
                Some(c) => v.push(c),
            }
        }
    }

    /// The rest of the line, up to a comment (`#` after whitespace), trimmed.
    fn unquoted(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.pos += 1;
        }
        let raw: Vec<char> = self.chars[start..self.pos].to_vec();
        self.skip_line();
        let mut end = raw.len();
        for i in 1..raw.len() {
            if raw[i] == '#' && raw[i - 1].is_whitespace() {
                end = i;
                break;
            }
        }
        raw[..end].iter().collect::<String>().trim_end().to_owned()
    }
}
