//! Diagnostics: what every stage reports, and how it is rendered with miette.
//!
//! Stages never print and never stop at the first problem: they return their
//! result together with a `Vec<Diagnostic>`. Rendering is done once, at the
//! edge (the CLI, the tests, the language server).

mod excerpt;

use crate::syntax::source::{FileId, SourceMap, Span};
use excerpt::Excerpt;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable code, `E0301` or `W0001`; see `codes.rs` for the list.
    pub code: &'static str,
    pub message: String,
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    /// Context lines such as the dimension bindings in force.
    pub notes: Vec<String>,
    /// A concrete fix.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.primary = Some(Label {
            span,
            message: label.into(),
        });
        self
    }

    pub fn with_label(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            span,
            message: label.into(),
        });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// How diagnostics look on the way out.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    pub color: bool,
    pub unicode: bool,
    pub width: usize,
}

impl RenderOptions {
    /// The fixed style of the snapshot tests: no colour, unicode, 100 columns.
    pub fn plain() -> RenderOptions {
        RenderOptions {
            color: false,
            unicode: true,
            width: 100,
        }
    }
}

/// Renders one diagnostic to text.
pub fn render(diag: &Diagnostic, sources: &SourceMap, options: RenderOptions) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme};
    let theme = match (options.unicode, options.color) {
        (true, true) => GraphicalTheme::unicode(),
        (true, false) => GraphicalTheme::unicode_nocolor(),
        (false, _) => GraphicalTheme::none(),
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(options.width)
        .with_links(false)
        .with_context_lines(1);
    let report = MietteReport::new(diag, sources);
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        // Rendering into a String cannot fail in practice; fall back to text.
        out = format!(
            "{}[{}]: {}\n",
            severity_word(diag.severity),
            diag.code,
            diag.message
        );
    }
    // Notes go after miette's report, in rustc's `= note:` style.
    for n in &diag.notes {
        out.push_str(&format!("  = note: {n}\n"));
    }
    out
}

/// Renders a list, one after another, followed by a one-line count.
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap, options: RenderOptions) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&render(d, sources, options));
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if !diags.is_empty() {
        out.push_str(&summary_line(errors, warnings));
        out.push('\n');
    }
    out
}

/// `1 epoch`, `2 epochs`: a count with its noun in the right number.
pub fn count(n: i64, noun: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} {noun}{s}")
}

pub fn summary_line(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, w: &str| count(n as i64, w);
    match (errors, warnings) {
        (0, w) => format!("{} emitted", plural(w, "warning")),
        (e, 0) => format!("{} found", plural(e, "error")),
        (e, w) => format!("{} and {} found", plural(e, "error"), plural(w, "warning")),
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// An adapter from [`Diagnostic`] to miette's trait. Labels that live in a
/// file other than the primary one become related reports, since miette draws
/// one source per report.
#[derive(Debug)]
struct MietteReport {
    message: String,
    code: &'static str,
    severity: miette::Severity,
    source: Option<Excerpt>,
    labels: Vec<miette::LabeledSpan>,
    help: Option<String>,
    related: Vec<MietteReport>,
}

impl MietteReport {
    fn new(diag: &Diagnostic, sources: &SourceMap) -> MietteReport {
        let severity = match diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        };
        let help = diag.help.clone();
        let notes = Vec::new();
        let Some(primary) = &diag.primary else {
            return MietteReport {
                message: headline(diag),
                code: "",
                severity,
                source: None,
                labels: Vec::new(),
                help,
                related: notes,
            };
        };
        let file = primary.span.file;
        let source = |file: FileId| {
            let spans: Vec<(usize, usize)> = std::iter::once(primary)
                .chain(&diag.secondary)
                .filter(|l| l.span.file == file)
                .map(|l| (l.span.start as usize, l.span.end as usize))
                .collect();
            let f = sources.get(file);
            Excerpt::new(&f.name, &f.text, &spans)
        };
        let excerpt = source(file);
        let mut labels = vec![miette::LabeledSpan::new_primary_with_span(
            non_empty(&primary.message),
            to_miette(primary.span, sources, &excerpt),
        )];
        let mut related = notes;
        for l in &diag.secondary {
            if l.span.file == file {
                labels.push(miette::LabeledSpan::new_with_span(
                    non_empty(&l.message),
                    to_miette(l.span, sources, &excerpt),
                ));
            } else {
                let other = source(l.span.file);
                let label = to_miette(l.span, sources, &other);
                related.push(MietteReport {
                    message: l.message.clone(),
                    code: "",
                    severity: miette::Severity::Advice,
                    source: Some(other),
                    labels: vec![miette::LabeledSpan::new_primary_with_span(None, label)],
                    help: None,
                    related: Vec::new(),
                });
            }
        }
        MietteReport {
            message: headline(diag),
            code: "",
            severity,
            source: Some(excerpt),
            labels,
            help,
            related,
        }
    }
}

/// `[E0403] message`: the code stays on the line a reader and `grep` see.
fn headline(diag: &Diagnostic) -> String {
    format!("[{}] {}", diag.code, diag.message)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Spans are clamped to the text and to character boundaries, so that a
/// stale or odd span can never make rendering panic, then mapped into the
/// excerpt that is shown.
fn to_miette(span: Span, sources: &SourceMap, excerpt: &Excerpt) -> miette::SourceSpan {
    let text = &sources.get(span.file).text;
    let mut start = (span.start as usize).min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (span.end as usize).clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let (start, end) = excerpt.span(start, end);
    (start, end - start).into()
}

impl fmt::Display for MietteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MietteReport {}

impl miette::Diagnostic for MietteReport {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.code.is_empty()).then(|| Box::new(self.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}
