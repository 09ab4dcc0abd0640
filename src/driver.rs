//! What the commands share: loading a MODEL argument (`std::NAME` or a
//! path), checking files, and rendering diagnostics for a terminal.

use crate::check::model::Model;
use crate::check::program::Program;
use crate::check::{self, BuildOptions, Checked};
use crate::diag::{self, Diagnostic, RenderOptions};
use crate::diag_codes as codes;
use crate::syntax::ast::Item;
use std::path::Path;

pub use crate::pipeline::LoadedModel;

/// Checks source text that has no file behind it (the fuzzer, editors).
pub fn check_bytes(name: &str, bytes: Vec<u8>) -> (Program, Checked) {
    crate::with_big_stack(|| {
        let mut prog = Program::new();
        let mut diags = Vec::new();
        let files: Vec<_> = prog
            .load_bytes(
                name,
                crate::syntax::source::Origin::Memory,
                bytes,
                &mut diags,
            )
            .into_iter()
            .collect();
        let mut checked = check::check_files(&prog, &files);
        diags.append(&mut checked.diags);
        check::sort(&mut diags);
        checked.diags = diags;
        (prog, checked)
    })
}

/// Loads and checks files. Parse errors are in `Checked::diags` too.
pub fn check_paths(paths: &[&Path]) -> (Program, Checked) {
    crate::with_big_stack(|| check_paths_in(Program::new(), paths))
}

/// As `check_paths`, loading into `prog` (one with an editor's unsaved
/// buffers, `Program::with_overlay`), on the calling thread: call it on a
/// thread with a big stack (`crate::with_big_stack`), as `nnc lsp` runs.
pub fn check_paths_in(mut prog: Program, paths: &[&Path]) -> (Program, Checked) {
    let mut diags = Vec::new();
    let mut files = Vec::new();
    let mut std_networks = Vec::new();
    for p in paths {
        match p.to_str().and_then(|s| s.strip_prefix("std::")) {
            Some(name) => std_networks.push((name.to_string(), prog.std_def(name, &mut diags))),
            None => files.extend(prog.load_path(p, &mut diags)),
        }
    }
    let mut checked = check::check_files(&prog, &files);
    for (name, def) in std_networks {
        match def {
            Some(def) => {
                let (model, d) = check::build_model(&prog, def, &BuildOptions::default());
                diags.extend(d);
                checked.models.extend(model);
            }
            None => diags.push(unknown_std(&prog, &name)),
        }
    }
    diags.append(&mut checked.diags);
    check::sort(&mut diags);
    checked.diags = diags;
    (prog, checked)
}

fn unknown_std(prog: &Program, name: &str) -> Diagnostic {
    let d = Diagnostic::error(
        codes::NETWORK_NOT_FOUND,
        format!("the standard library has no `{name}`"),
    );
    let list = prog.std_list();
    let names: Vec<&str> = list.split(", ").collect();
    match check::did_you_mean(name, names.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `std::{s}`?")),
        None => d.with_help(format!("it has: {list}")),
    }
}

/// Loads `std::NAME` or a file's network, and builds it with `options`.
/// When no input shape is given, a symbolic batch axis is bound to 1 (so
/// that counts are per sample), and any other symbolic size is an error.
pub fn load_model(
    prog: &mut Program,
    arg: &str,
    network: Option<&str>,
    options: &BuildOptions,
) -> Result<LoadedModel, Vec<Diagnostic>> {
    crate::with_big_stack(|| load_model_here(prog, arg, network, options))
}

fn load_model_here(
    prog: &mut Program,
    arg: &str,
    network: Option<&str>,
    options: &BuildOptions,
) -> Result<LoadedModel, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let (def, file) = if let Some(name) = arg.strip_prefix("std::") {
        match prog.std_def(name, &mut diags) {
            Some(d) => (d, None),
            None => return Err(vec![unknown_std(prog, name)]),
        }
    } else {
        let file = prog.load_path(Path::new(arg), &mut diags);
        if diag::has_errors(&diags) {
            return Err(diags);
        }
        let file = file.ok_or_else(|| diags.clone())?;
        match check::find_network(prog, file, network) {
            Ok(d) => (d, Some(file)),
            Err(d) => return Err(vec![*d]),
        }
    };
    let (model, build_diags) = check::build_model(prog, def, options);
    let mut model = match model {
        Some(m) => m,
        None => return Err(only_errors(build_diags)),
    };
    let mut generic = None;
    if options.input_shape.is_none() {
        if let Some(concrete) = default_input_shape(&model) {
            let concrete = concrete?;
            let opts = BuildOptions {
                input_shape: Some(concrete.clone()),
                ..options.clone()
            };
            let (m, d) = check::build_model(prog, def, &opts);
            let bound = m.ok_or_else(|| only_errors(d))?;
            generic = Some(generic_of(std::mem::replace(&mut model, bound), &concrete));
        }
    }
    let train = file.and_then(|f| training_config(prog, f, &model));
    let freeze = train.as_ref().map(|t| t.freeze.clone()).unwrap_or_default();
    Ok(LoadedModel {
        model,
        freeze,
        train,
        generic,
    })
}

/// The symbolic model, with the sizes its free input axes took in
/// `concrete` (the batch axis's symbol apart: it varies).
fn generic_of(model: Model, concrete: &[i64]) -> crate::pipeline::Generic {
    let shape = model
        .inputs
        .first()
        .map(|i| model.shape(i.value).to_vec())
        .unwrap_or_default();
    let name = |axis: usize| {
        shape
            .get(axis)
            .and_then(|d| d.as_symbol())
            .map(str::to_string)
    };
    let sizes = (1..shape.len())
        .filter_map(|axis| Some((name(axis)?, *concrete.get(axis)?)))
        .collect();
    crate::pipeline::Generic {
        batch: name(0),
        sizes,
        model,
    }
}

fn only_errors(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.into_iter().filter(Diagnostic::is_error).collect()
}

/// `None` when the input is already concrete; otherwise the shape with the
/// batch axis bound to 1, or an error naming the symbolic axis.
fn default_input_shape(model: &Model) -> Option<Result<Vec<i64>, Vec<Diagnostic>>> {
    let input = model.inputs.first()?;
    let shape = model.shape(input.value);
    if shape.iter().all(|d| d.is_const()) {
        return None;
    }
    let mut out = Vec::new();
    for (axis, d) in shape.iter().enumerate() {
        let default = input.default_sizes.get(axis).copied().flatten();
        match d.as_const().or(default) {
            Some(v) => out.push(v),
            None if axis == 0 => out.push(1),
            None => {
                return Some(Err(vec![Diagnostic::error(
                    codes::SYMBOLIC_SIZE,
                    format!("input `{}` has a symbolic size `{d}` on axis {axis}", input.name),
                )
                .at(input.span, "symbolic size")
                .with_help(format!(
                    "pass a concrete shape with `--input-shape`, for example `--input-shape 1,3,224,224`, or give the size a default in the network: `{d} = 224`"
                ))]))
            }
        }
    }
    Some(Ok(out))
}

fn training_config(
    prog: &Program,
    file: crate::syntax::source::FileId,
    model: &Model,
) -> Option<check::train::TrainConfig> {
    prog.file(file)
        .ast
        .items
        .iter()
        .find_map(|item| match item {
            Item::Train(t) => check::train::check_train(prog, file, t, std::slice::from_ref(model))
                .0
                .filter(|c| c.network == model.name),
            _ => None,
        })
}

/// Rendering for stderr: colour only on a terminal without NO_COLOR.
pub fn terminal_render_options() -> RenderOptions {
    use std::io::IsTerminal;
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    RenderOptions {
        color,
        unicode: true,
        width,
    }
}
