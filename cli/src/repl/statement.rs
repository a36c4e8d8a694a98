//! What the user typed, cut into entries: ASA statements end with `;`
//! (outside quotes, brackets and comments), meta-commands end with their
//! line, except `.sql` and `.explain`, which hold a query and end with `;`
//! too. An unfinished entry waits for more lines.

/// One complete entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// An ASA statement, with its `;`.
    Statement(String),
    /// A meta-command line (`.format json`), or `.sql`/`.explain` with its query.
    Meta(String),
}

/// Meta-commands whose argument is a query ending with `;`.
const QUERY_COMMANDS: &[&str] = &[".sql", ".explain"];

/// The byte offset of the first `;` of `text` that ends a statement: not in
/// a string (`'it''s'`), a quoted name (`"a;b"`, `[a;b]`) or a comment.
pub(crate) fn statement_end(text: &str) -> Option<usize> {
    #[derive(PartialEq)]
    enum In {
        Code,
        Single,
        Double,
        Bracket,
        LineComment,
        BlockComment,
    }
    let bytes = text.as_bytes();
    let mut state = In::Code;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            In::Code => match b {
                b';' => return Some(i),
                b'\'' => state = In::Single,
                b'"' => state = In::Double,
                b'[' => state = In::Bracket,
                b'-' if next == Some(b'-') => {
                    state = In::LineComment;
                    i += 1;
                }
                b'/' if next == Some(b'*') => {
                    state = In::BlockComment;
                    i += 1;
                }
                _ => {}
            },
            In::Single if b == b'\'' => {
                // `''` is a quote inside the string.
                if next == Some(b'\'') {
                    i += 1;
                } else {
                    state = In::Code;
                }
            }
            In::Double if b == b'"' => state = In::Code,
            In::Bracket if b == b']' => state = In::Code,
            In::LineComment if b == b'\n' => state = In::Code,
            In::BlockComment if b == b'*' && next == Some(b'/') => {
                state = In::Code;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `text` is only blanks and comments.
fn is_blank(text: &str) -> bool {
    let mut rest = text.trim_start();
    loop {
        if rest.is_empty() {
            return true;
        }
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            match after.split_once("*/") {
                Some((_, r)) => rest = r.trim_start(),
                None => return false,
            }
        } else {
            return false;
        }
    }
}

/// The complete entries at the start of `buffer`, and what is left (an
/// unfinished statement, or blanks). The end of the buffer ends a
/// meta-command line.
pub(crate) fn entries(buffer: &str) -> (Vec<Entry>, String) {
    let mut out = Vec::new();
    let mut rest = buffer;
    loop {
        let text = rest.trim_start();
        if is_blank(text) {
            return (out, String::new());
        }
        if text.starts_with('.') {
            let command = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches(';')
                .to_ascii_lowercase();
            if QUERY_COMMANDS.contains(&command.as_str()) {
                match statement_end(text) {
                    Some(end) => {
                        out.push(Entry::Meta(text[..=end].trim().to_string()));
                        rest = &text[end + 1..];
                    }
                    None => return (out, text.to_string()),
                }
            } else {
                let (line, after) = text.split_once('\n').unwrap_or((text, ""));
                out.push(Entry::Meta(line.trim().to_string()));
                rest = after;
            }
            continue;
        }
        match statement_end(text) {
            Some(end) => {
                out.push(Entry::Statement(text[..=end].trim().to_string()));
                rest = &text[end + 1..];
            }
            None => return (out, text.to_string()),
        }
    }
}

/// Whether `buffer` needs more lines: an unfinished statement, or a `.sql`
/// or `.explain` without its `;`.
pub(crate) fn is_incomplete(buffer: &str) -> bool {
    !entries(buffer).1.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_strings_names_and_comments() {
        assert_eq!(statement_end("SELECT 1;"), Some(8));
        assert_eq!(statement_end("SELECT 'a;b''c;' AS x;"), Some(21));
        assert_eq!(statement_end("SELECT [a;b], \"c;d\" FROM t;"), Some(26));
        assert_eq!(statement_end("SELECT 1 -- not here;\n FROM t;"), Some(29));
        assert_eq!(statement_end("SELECT /* ; */ 1;"), Some(16));
        assert_eq!(statement_end("SELECT 'open;"), None);
        assert_eq!(statement_end("SELECT 1"), None);
    }

    #[test]
    fn multi_line_statements_wait_for_their_semicolon() {
        let (done, rest) = entries("SELECT device_id\nFROM readings\n");
        assert!(done.is_empty());
        assert!(rest.starts_with("SELECT device_id"));
        assert!(is_incomplete("SELECT device_id\nFROM readings\n"));
        let (done, rest) = entries("SELECT device_id\nFROM readings;\n");
        assert_eq!(
            done,
            [Entry::Statement("SELECT device_id\nFROM readings;".into())]
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn meta_commands_end_with_their_line_except_sql_and_explain() {
        let (done, rest) = entries(".format json\nSELECT 1; SELECT 2;\n.sql SELECT *\nFROM t");
        assert_eq!(
            done,
            [
                Entry::Meta(".format json".into()),
                Entry::Statement("SELECT 1;".into()),
                Entry::Statement("SELECT 2;".into()),
            ]
        );
        assert_eq!(rest, ".sql SELECT *\nFROM t");
        assert!(is_incomplete(".explain SELECT * FROM r"));
        assert!(!is_incomplete(".explain SELECT * FROM r;"));
        assert!(!is_incomplete(".schema readings"));
        assert!(!is_incomplete("   "));
        assert!(!is_incomplete("-- a comment\n"));
        let (done, _) = entries(".sql SELECT 1;");
        assert_eq!(done, [Entry::Meta(".sql SELECT 1;".into())]);
    }
}
