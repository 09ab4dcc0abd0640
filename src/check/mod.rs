//! Name resolution, block expansion and shape checking.
//!
//! Entry points: [`check_files`] for `nnc check` (every network, block and
//! training section of the files, every error), and [`build_model`] for the
//! commands that need one network's [`model::Model`].

pub mod dim;
pub mod eval;
mod lints;
pub mod model;
pub mod ops;
pub mod params;
pub mod program;
mod suggest;
pub mod train;
pub mod value;

use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use crate::syntax::ast::{DefKind, Item};
use crate::syntax::source::FileId;
use eval::Checker;
use model::Model;
use ops::args::GivenArg;
use program::{DefId, Program};
use value::Value;

pub use suggest::did_you_mean;

/// Overrides for building one network.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Replaces the shape of the first `input`.
    pub input_shape: Option<Vec<i64>>,
    /// Values for network parameters, by name (`classes`).
    pub params: Vec<(String, Value)>,
}

/// The result of checking files: what was found, and the checked models and
/// training configurations for later stages.
#[derive(Default)]
pub struct Checked {
    pub models: Vec<Model>,
    /// Blocks no network instantiates, checked alone with symbolic sizes
    /// (what an editor shows on hover inside them).
    pub alone: Vec<Model>,
    pub trains: Vec<train::TrainConfig>,
    pub diags: Vec<Diagnostic>,
}

/// Checks every definition and training section of `files`.
pub fn check_files(prog: &Program, files: &[FileId]) -> Checked {
    let mut out = Checked::default();
    let mut checker = Checker::new(prog);
    let mut blocks = Vec::new();
    let mut models_by_name = Vec::new();
    for &f in files {
        let file = prog.file(f);
        let mut defs: Vec<(&String, DefId)> = file.defs.iter().map(|(k, v)| (k, *v)).collect();
        defs.sort_by_key(|(_, id)| *id);
        for (name, id) in defs {
            match prog.def(id).kind {
                DefKind::Network => {
                    checker.check_entry(id, Vec::new(), None);
                    let model = std::mem::take(&mut checker.model);
                    models_by_name.push((f, name.clone(), id));
                    out.models.push(model);
                }
                DefKind::Block => blocks.push(id),
            }
        }
    }
    for id in blocks {
        if !checker.instantiated.contains(&id) {
            checker.check_alone(id);
            let mut model = std::mem::take(&mut checker.model);
            if !model.layers.is_empty() {
                model.name = prog.def(id).name.name.clone();
                out.alone.push(model);
            }
        }
    }
    out.diags.append(&mut checker.diags);
    // Lints cover every user file, imported ones too.
    for f in prog.files.iter().filter(|f| !f.is_std) {
        out.diags.extend(lints::lint_file(prog, f.id));
    }
    for &f in files {
        for item in &prog.file(f).ast.items {
            if let Item::Train(t) = item {
                let (cfg, diags) = train::check_train(prog, f, t, &out.models);
                out.diags.extend(diags);
                out.trains.extend(cfg);
            }
        }
    }
    out.diags.extend(prog.unused_imports());
    sort(&mut out.diags);
    out
}

/// Builds the model of one network with the given overrides.
pub fn build_model(
    prog: &Program,
    def: DefId,
    options: &BuildOptions,
) -> (Option<Model>, Vec<Diagnostic>) {
    let mut checker = Checker::new(prog);
    let d = prog.def(def);
    let args = options
        .params
        .iter()
        .map(|(name, value)| GivenArg {
            name: Some((name.clone(), d.name.span)),
            value: value.clone(),
            span: d.name.span,
        })
        .collect();
    let out = checker.check_entry(def, args, options.input_shape.clone());
    let mut diags = checker.diags;
    sort(&mut diags);
    let ok = out.is_some() && !crate::diag::has_errors(&diags);
    (ok.then_some(checker.model), diags)
}

/// Finds the network a command means: `std::NAME`, or a network of `file`
/// (the one named, or its only one).
pub fn find_network(
    prog: &Program,
    file: FileId,
    name: Option<&str>,
) -> Result<DefId, Box<Diagnostic>> {
    let f = prog.file(file);
    let mut networks: Vec<(&String, DefId)> = f
        .defs
        .iter()
        .filter(|(_, id)| prog.def(**id).kind == DefKind::Network)
        .map(|(n, id)| (n, *id))
        .collect();
    networks.sort_by_key(|(_, id)| *id);
    let names: Vec<&str> = networks.iter().map(|(n, _)| n.as_str()).collect();
    let file_name = &prog.sources.get(file).name;
    match name {
        Some(n) => networks
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, id)| *id)
            .ok_or_else(|| {
                let mut d = Diagnostic::error(
                    codes::NETWORK_NOT_FOUND,
                    format!("`{file_name}` has no network `{n}`"),
                );
                d = match did_you_mean(n, names.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None if names.is_empty() => d.with_help("the file defines no network"),
                    None => d.with_help(format!("its networks are: {}", names.join(", "))),
                };
                Box::new(d)
            }),
        None => match networks.as_slice() {
            [(_, id)] => Ok(*id),
            [] => Err(Box::new(
                Diagnostic::error(
                    codes::NETWORK_NOT_FOUND,
                    format!("`{file_name}` defines no network"),
                )
                .with_help("define one with `network NAME { input x: [...] ... return ... }`"),
            )),
            _ => Err(Box::new(
                Diagnostic::error(
                    codes::NETWORK_NOT_FOUND,
                    format!(
                        "`{file_name}` defines several networks: {}",
                        names.join(", ")
                    ),
                )
                .with_help("choose one with `--network NAME`"),
            )),
        },
    }
}

/// Diagnostics in source order: by file, then position; those without a
/// span last. The sort is stable, so equal positions keep their order.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by_key(|d| {
        d.primary
            .as_ref()
            .map_or((u32::MAX, 0), |l| (l.span.file.0, l.span.start))
    });
}
