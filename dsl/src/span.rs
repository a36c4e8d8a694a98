//! Source positions: every AST node carries the byte range it was parsed from.

use std::fmt;
use std::ops::Range;

/// A byte range `start..end` in the source text of a job file.
///
/// Two spans always compare equal: spans locate a node, they are not part of
/// its meaning. This lets a tree parsed from canonical text be compared with
/// the tree parsed from the original (the round-trip test), as sqlparser-rs
/// does. Compare `start`/`end` explicitly where the position itself matters.
#[derive(Clone, Copy, Default, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    /// 1-based line and column (in characters) of `start` in `source`.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.start)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

impl PartialEq for Span {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.start, span.len()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let src = "SELECT\n  é, x";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 7), (2, 1));
        // 'x' sits after "  é, " which is 5 characters but 6 bytes.
        assert_eq!(line_col(src, src.len() - 1), (2, 6));
    }

    #[test]
    fn spans_never_distinguish_nodes() {
        assert_eq!(Span::new(1, 2), Span::new(5, 9));
        assert_eq!(Span::new(1, 2).to(Span::new(5, 9)).range(), 1..9);
    }
}
