//! The `nnc` command line: one small function per subcommand.

use clap::{Parser, Subcommand};
use nnc::check::value::Value;
use nnc::check::BuildOptions;
use nnc::diag::{self, Diagnostic};
use nnc::driver;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes of the command-line contract.
const USER_ERROR: u8 = 1;
const INTERNAL_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "nnc",
    version,
    about = "A compiler for neural-network definitions (.nn files)",
    long_about = "nnc checks every tensor shape of a .nn model before anything runs, and points at the \
                  exact place of each mistake.\n\nA MODEL is a path to a .nn file (its one network, or the \
                  one named by --network) or std::NAME for a network of the standard library \
                  (std::lenet, std::alexnet, std::vgg11 ... std::vgg19, std::resnet18 ... std::resnet152).\n\n\
                  Exit codes: 0 success, 1 a problem with the input (a diagnostic says what), 2 an internal error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and shape-check .nn files, reporting every error and warning.
    ///
    /// Checks every network, every block (blocks no network uses are checked
    /// with symbolic sizes) and every training section. Diagnostics go to
    /// stderr; the exit code is 1 when there is an error.
    Check {
        /// The .nn files to check; `std::NAME` checks a standard-library network.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Treat warnings as errors (exit code 1 when there is any).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Print a network's layers: path, op, output shape, parameters and
    /// multiply-accumulates, then the totals.
    ///
    /// MACs count convolutions and fully connected layers (torchvision's
    /// convention). Without --input-shape the declared input is used, with a
    /// symbolic batch size bound to 1.
    Summary {
        /// A .nn file or std::NAME.
        model: String,
        /// The input shape, comma-separated: 1,3,224,224.
        #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "DIMS", allow_negative_numbers = true)]
        input_shape: Option<Vec<i64>>,
        /// Number of classes (sets the network's `classes` parameter).
        #[arg(long, value_name = "K")]
        classes: Option<i64>,
        /// Which network of the file, when it has several.
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal compiler error: {info}");
        eprintln!("note: this is a bug in nnc; please report it with the input that caused it");
    }));
    let cli = Cli::parse();
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(code) => code,
        Err(_) => ExitCode::from(INTERNAL_ERROR),
    }
}

fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check {
            files,
            deny_warnings,
        } => check(&files, deny_warnings),
        Command::Summary {
            model,
            input_shape,
            classes,
            network,
            json,
        } => summary(&model, input_shape, classes, network.as_deref(), json),
    }
}

fn check(files: &[PathBuf], deny_warnings: bool) -> ExitCode {
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let (prog, checked) = driver::check_paths(&paths);
    let options = driver::terminal_render_options();
    eprint!(
        "{}",
        diag::render_all(&checked.diags, &prog.sources, options)
    );
    let failed = diag::has_errors(&checked.diags) || (deny_warnings && !checked.diags.is_empty());
    if failed {
        ExitCode::from(USER_ERROR)
    } else {
        let n = files.len();
        eprintln!(
            "checked {n} file{}: no errors",
            if n == 1 { "" } else { "s" }
        );
        ExitCode::SUCCESS
    }
}

fn summary(
    model: &str,
    input_shape: Option<Vec<i64>>,
    classes: Option<i64>,
    network: Option<&str>,
    json: bool,
) -> ExitCode {
    if let Some(shape) = &input_shape {
        if let Some(bad) = shape.iter().find(|&&d| d < 1) {
            eprintln!("error: --input-shape sizes must be at least 1, but one is {bad}");
            return ExitCode::from(USER_ERROR);
        }
    }
    let options = BuildOptions {
        input_shape,
        params: classes
            .map(|k| vec![("classes".to_string(), Value::int(k))])
            .unwrap_or_default(),
    };
    let mut prog = nnc::check::program::Program::new();
    match driver::load_model(&mut prog, model, network, &options) {
        Ok(loaded) => {
            let s = nnc::summary::summarize(&loaded.model, &loaded.freeze);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&nnc::summary::to_json(&s)).unwrap_or_default()
                );
            } else {
                print!("{}", nnc::summary::to_text(&s));
            }
            ExitCode::SUCCESS
        }
        Err(diags) => report(&prog, &diags),
    }
}

fn report(prog: &nnc::check::program::Program, diags: &[Diagnostic]) -> ExitCode {
    let options = driver::terminal_render_options();
    eprint!("{}", diag::render_all(diags, &prog.sources, options));
    ExitCode::from(USER_ERROR)
}
