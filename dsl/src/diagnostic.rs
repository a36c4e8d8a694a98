//! Problems found in a job file, located by span, and their rendering with
//! the source line and a caret (miette).

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};

use crate::span::{Span, line_col};

/// One problem in a job file. The user must act: the query is refused
/// before anything runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Diagnostic {
    /// A stable identifier, e.g. `iotql::syntax` or `iotql::unknown-window`.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    /// The text under the caret.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
    /// Other places that explain it, e.g. where a name was first declared.
    pub notes: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn new(
        code: &'static str,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            span,
            label: label.into(),
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn with_note(mut self, span: Span, text: impl Into<String>) -> Self {
        self.notes.push((span, text.into()));
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `FILE:LINE:COL: message`, the one-line form for logs and editors.
    pub fn one_line(&self, file: &str, source: &str) -> String {
        let (line, col) = line_col(source, self.span.start);
        format!("{file}:{line}:{col}: {}", self.message)
    }

    /// The diagnostic as a miette report over `source`.
    pub fn to_report(&self, file: &str, source: &str) -> miette::Report {
        let mut diag = MietteDiagnostic::new(self.message.clone())
            .with_code(self.code)
            .with_label(LabeledSpan::at(self.span, self.label.clone()))
            .and_labels(
                self.notes
                    .iter()
                    .map(|(span, text)| LabeledSpan::at(*span, text.clone())),
            );
        if let Some(help) = &self.help {
            diag = diag.with_help(help.clone());
        }
        miette::Report::new(diag).with_source_code(NamedSource::new(file, source.to_string()))
    }
}

/// How rendered diagnostics look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unicode frame and colours, for terminals.
    Color,
    /// Unicode frame without colours, for files, pipes and snapshots.
    Plain,
}

/// Renders every diagnostic with file, line, column, the source line and a
/// caret, each preceded by its one-line `FILE:LINE:COL:` form.
pub fn render(diagnostics: &[Diagnostic], file: &str, source: &str, style: Style) -> String {
    let theme = match style {
        Style::Color => GraphicalTheme::unicode(),
        Style::Plain => GraphicalTheme::unicode_nocolor(),
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&format!("error: {}\n", d.one_line(file, source)));
        let report = d.to_report(file, source);
        if handler.render_report(&mut out, report.as_ref()).is_err() {
            out.push_str(&format!("  {}\n", d.message));
        }
        out.push('\n');
    }
    out
}
