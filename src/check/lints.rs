//! Checks on the text of definitions that do not need shapes: unused
//! values and parameters, unreachable statements, unknown type names,
//! duplicate inputs. They run once per definition, not per instantiation,
//! so a branch that one instantiation skips is still seen.

use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use crate::syntax::ast::{Def, DefBody, Expr, Item, Path, Stmt, TypeExpr};
use crate::syntax::source::{FileId, Span};

use super::program::Program;

pub fn lint_file(prog: &Program, file: FileId) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for item in &prog.file(file).ast.items {
        if let Item::Def(def) = item {
            lint_def(def, &mut out);
            unknown_layers(prog, file, def, &mut out);
        }
    }
    out
}

/// Every layer name in a definition must resolve, in every branch, taken
/// or not. (Shape checking skips unknown layers: this is their one report.)
fn unknown_layers(prog: &Program, file: FileId, def: &Def, out: &mut Vec<Diagnostic>) {
    let mut callees: Vec<&Path> = Vec::new();
    let mut values: Vec<String> = def.params.iter().map(|p| p.name.name.clone()).collect();
    match &def.body {
        DefBody::Alias { callee, .. } => callees.push(callee),
        DefBody::Body { stmts, .. } => {
            for s in crate::syntax::ast::all_stmts(stmts) {
                match s {
                    Stmt::Input { name, .. } | Stmt::Let { name, .. } => {
                        values.push(name.name.clone())
                    }
                    Stmt::For { var, .. } => values.push(var.name.clone()),
                    Stmt::Return { .. } => {}
                }
                let mut exprs = Vec::new();
                match s {
                    Stmt::Input { shape, .. } => exprs.extend(shape.exprs()),
                    Stmt::Let { shape, value, .. } => {
                        exprs.push(value);
                        exprs.extend(shape.iter().flat_map(|sh| sh.exprs()));
                    }
                    Stmt::Return { value, .. } => exprs.push(value),
                    // The body's statements come next in `all_stmts`.
                    Stmt::For { start, end, .. } => exprs.extend(std::iter::once(start).chain(end)),
                }
                for e in exprs {
                    callees_in_expr(e, &mut callees);
                }
            }
        }
    }
    let failed = &prog.file(file).failed_imports;
    for callee in callees {
        let name = callee.text();
        if prog.resolve_callee(file, callee).is_some() || failed.contains(&name) {
            continue;
        }
        let last = &callee.last().name;
        let mut d = Diagnostic::error(codes::UNKNOWN_LAYER, format!("unknown layer `{name}`"))
            .at(callee.span, "not a layer, block or network");
        if callee.segments.len() == 1 && values.contains(last) {
            d = d.with_help(format!(
                "`{last}` is a value; combine values with `+`, `*` or `concat(...)`, not with `->`"
            ));
        } else {
            let names = prog.visible_names(file);
            let foreign = (callee.segments.len() == 1)
                .then(|| super::suggest::foreign_layer(last))
                .flatten();
            match (
                foreign,
                super::did_you_mean(last, names.iter().map(|s| s.as_str())),
            ) {
                (Some(help), _) => d = d.with_help(help),
                (None, Some(s)) => d = d.with_help(format!("did you mean `{s}`?")),
                (None, None) if callee.segments.len() == 2 && callee.segments[0].name == "std" => {
                    d = d.with_help(format!("the standard library has: {}", prog.std_list()));
                }
                (None, None) => {}
            }
        }
        out.push(d);
    }
}

/// The callees of the chains' steps in an expression (layers, blocks and
/// networks; not functions of values such as `concat`).
fn callees_in_expr<'a>(e: &'a Expr, out: &mut Vec<&'a Path>) {
    struct Layers<'a, 'o>(&'o mut Vec<&'a Path>);
    impl<'a> crate::syntax::visit::Visitor<'a> for Layers<'a, '_> {
        fn layer(&mut self, p: &'a Path) {
            self.0.push(p);
        }
    }
    crate::syntax::visit::expr(&mut Layers(out), e);
}

fn lint_def(def: &Def, out: &mut Vec<Diagnostic>) {
    for p in &def.params {
        check_type(&p.ty, out);
    }
    let mut uses = Vec::new();
    match &def.body {
        DefBody::Alias { args, .. } => {
            for a in args {
                names_in_expr(&a.value, &mut uses);
            }
        }
        DefBody::Body { output, stmts } => {
            if let Some(o) = output {
                for d in o.exprs() {
                    names_in_expr(d, &mut uses);
                }
            }
            lint_body(stmts, out);
            for s in stmts {
                stmt_uses(s, &mut uses);
            }
        }
    }
    for p in &def.params {
        if let Some(default) = &p.default {
            names_in_expr(default, &mut uses);
        }
    }
    for p in &def.params {
        if !uses.iter().any(|u| u == &p.name.name) {
            out.push(
                Diagnostic::warning(
                    codes::UNUSED_PARAMETER,
                    format!("parameter `{}` is never used", p.name.name),
                )
                .at(p.name.span, "unused parameter")
                .with_help(format!(
                    "remove it, or use it in the body of `{}`",
                    def.name.name
                )),
            );
        }
    }
}

fn check_type(t: &TypeExpr, out: &mut Vec<Diagnostic>) {
    match t {
        TypeExpr::Name(n) => {
            const TYPES: [&str; 4] = ["int", "float", "bool", "string"];
            if !TYPES.contains(&n.name.as_str()) {
                let mut d =
                    Diagnostic::error(codes::UNKNOWN_TYPE, format!("unknown type `{}`", n.name))
                        .at(n.span, "not a type");
                d = match super::did_you_mean(&n.name, TYPES) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(
                        "the types are int, float, bool, string and lists such as [int]",
                    ),
                };
                out.push(d);
            }
        }
        TypeExpr::List(inner, _) => check_type(inner, out),
    }
}

fn lint_body(stmts: &[Stmt], out: &mut Vec<Diagnostic>) {
    let mut inputs: Vec<(&str, Span)> = Vec::new();
    for (i, s) in stmts.iter().enumerate() {
        match s {
            Stmt::Return { .. } => {
                if let Some(next) = stmts.get(i + 1) {
                    let last = stmts.last().map_or(next.span(), |l| l.span());
                    out.push(
                        Diagnostic::warning(
                            codes::UNREACHABLE,
                            "statements after `return` are never run",
                        )
                        .at(next.span().to(last), "unreachable")
                        .with_label(s.span(), "the definition returns here"),
                    );
                }
                break;
            }
            Stmt::Input { name, .. } => {
                if let Some((_, prev)) = inputs.iter().find(|(n, _)| *n == name.name) {
                    out.push(
                        Diagnostic::error(
                            codes::DUPLICATE_VALUE,
                            format!("input `{}` is declared twice", name.name),
                        )
                        .at(name.span, "declared again")
                        .with_label(*prev, "first declared here"),
                    );
                }
                inputs.push((&name.name, name.span));
                check_used(stmts, i, &name.name, name.span, "input", out);
            }
            Stmt::Let { name, .. } => check_used(stmts, i, &name.name, name.span, "value", out),
            Stmt::For { body, .. } => {
                let mut after = Vec::new();
                for s in &stmts[i + 1..] {
                    stmt_uses(s, &mut after);
                }
                lint_loop(body, &after, out);
            }
        }
    }
}

/// Warns about a value bound in a loop's body whose value nothing reads:
/// not the rest of its iteration, nor the next iteration before binding it
/// again, nor (for the last iteration's value) what follows the loop. The
/// second case is the usual slip when threading a value: `y = x -> layer`
/// in the body, where `x = x -> layer` was meant, builds one layer per
/// iteration and keeps only the last.
fn lint_loop(body: &[Stmt], after: &[String], out: &mut Vec<Diagnostic>) {
    let mut uses = after.to_vec();
    for s in body {
        stmt_uses(s, &mut uses);
    }
    for (i, s) in body.iter().enumerate() {
        match s {
            Stmt::Let { name, .. } if !name.name.starts_with('_') => {
                match next_read(body, i, &name.name) {
                    NextRead::Read => {}
                    NextRead::RebindsNextIteration if after.contains(&name.name) => {
                        out.push(overwritten_in_loop(&name.name, name.span))
                    }
                    NextRead::RebindsInIteration | NextRead::RebindsNextIteration => {
                        out.push(unused(&name.name, name.span, "value"))
                    }
                }
            }
            Stmt::For { body: inner, .. } => lint_loop(inner, &uses, out),
            _ => {}
        }
    }
}

/// What happens first to the value `body[at]` binds to `name`: read, or
/// bound again in the same iteration or in the next one. The statement at
/// `at` comes last of all, read before it binds (`x = concat(x, y)`). A
/// binding inside a nested loop does not count as one (the loop may run no
/// times), its reads do.
enum NextRead {
    Read,
    RebindsInIteration,
    RebindsNextIteration,
}

fn next_read(body: &[Stmt], at: usize, name: &str) -> NextRead {
    let rest = body[at + 1..]
        .iter()
        .map(|s| (s, NextRead::RebindsInIteration));
    let next = body[..=at]
        .iter()
        .map(|s| (s, NextRead::RebindsNextIteration));
    for (s, rebinding) in rest.chain(next) {
        let mut reads = Vec::new();
        stmt_uses(s, &mut reads);
        if reads.iter().any(|r| r == name) {
            return NextRead::Read;
        }
        if matches!(s, Stmt::Let { name: n, .. } if n.name == name) {
            return rebinding;
        }
    }
    // Unreachable in practice: `body[at]` binds `name`.
    NextRead::Read
}

fn overwritten_in_loop(name: &str, span: Span) -> Diagnostic {
    Diagnostic::warning(
        codes::UNUSED_VALUE,
        format!("only the last iteration's `{name}` is ever read"),
    )
    .at(span, "overwritten by the next iteration")
    .with_help(format!(
        "each iteration binds `{name}` again before reading it; to chain the iterations, bind the value the loop reads (`x = x -> ...`), or name it `_{name}` if only the last is meant"
    ))
}

fn unused(name: &str, span: Span, what: &str) -> Diagnostic {
    Diagnostic::warning(
        codes::UNUSED_VALUE,
        format!("{what} `{name}` is never used"),
    )
    .at(span, "never used")
    .with_help(format!(
        "remove it, or name it `_{name}` if it is there on purpose"
    ))
}

/// Warns when the value bound at `stmts[at]` is not read before it is bound
/// again or the body ends.
fn check_used(
    stmts: &[Stmt],
    at: usize,
    name: &str,
    span: Span,
    what: &str,
    out: &mut Vec<Diagnostic>,
) {
    if name.starts_with('_') {
        return;
    }
    for s in &stmts[at + 1..] {
        let mut uses = Vec::new();
        stmt_uses(s, &mut uses);
        if uses.iter().any(|u| u == name) {
            return;
        }
        if let Stmt::Let { name: n, .. } = s {
            if n.name == name {
                break;
            }
        }
    }
    out.push(unused(name, span, what));
}

fn stmt_uses(s: &Stmt, uses: &mut Vec<String>) {
    match s {
        Stmt::Input { shape, .. } => {
            for d in shape.exprs() {
                names_in_expr(d, uses);
            }
        }
        Stmt::Let { shape, value, .. } => {
            if let Some(sh) = shape {
                for d in sh.exprs() {
                    names_in_expr(d, uses);
                }
            }
            names_in_expr(value, uses);
        }
        Stmt::Return { value, .. } => names_in_expr(value, uses),
        Stmt::For {
            start, end, body, ..
        } => {
            names_in_expr(start, uses);
            if let Some(e) = end {
                names_in_expr(e, uses);
            }
            for s in body {
                stmt_uses(s, uses);
            }
        }
    }
}

/// Every single-segment name an expression reads (not layer names).
fn names_in_expr(e: &Expr, uses: &mut Vec<String>) {
    struct Names<'u>(&'u mut Vec<String>);
    impl crate::syntax::visit::Visitor<'_> for Names<'_> {
        fn name(&mut self, p: &Path) {
            if let [one] = p.segments.as_slice() {
                self.0.push(one.name.clone());
            }
        }
    }
    crate::syntax::visit::expr(&mut Names(uses), e);
}
