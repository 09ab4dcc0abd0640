//! The `nnc` command line: one small function per subcommand.

use clap::{Parser, Subcommand};

use nnc::check::value::Value;
use nnc::check::BuildOptions;
use nnc::diag::{self, Diagnostic};
use nnc::driver;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Writes to standard error. A failure to write there has nowhere to be
/// reported, so it is ignored: it must never become a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit codes of the command-line contract.
const USER_ERROR: u8 = 1;
const INTERNAL_ERROR: u8 = 2;
/// 128 + SIGINT, as shells report a program stopped by Ctrl-C.
const INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "nnc",
    version,
    about = "A compiler for neural-network definitions (.nn files)",
    long_about = "nnc checks every tensor shape of a .nn model before anything runs, and points at the \
                  exact place of each mistake.\n\nA MODEL is a path to a .nn file (its one network, or the \
                  one named by --network) or std::NAME for a network of the standard library \
                  (std::lenet, std::alexnet, std::vgg11 ... std::vgg19, std::vgg11_bn ... std::vgg19_bn, \
                  std::resnet18 ... std::resnet152, std::resnext50_32x4d, std::resnext101_32x8d, \
                  std::wide_resnet50_2, std::wide_resnet101_2, std::googlenet, std::mobilenet_v2, \
                  std::densenet121, std::densenet169, std::densenet201).\n\n\
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
    /// Write the compiled form of a model: the graph IR as text, a
    /// Graphviz drawing of it, or its kernels (loop nests).
    ///
    /// `--mode train` writes the training step as one graph: forward pass,
    /// the loss of the file's training section (cross-entropy without one),
    /// the gradient of every parameter that is not frozen, and the
    /// optimizer's update of each (SGD at 0.01 without a training section),
    /// with the new parameters, batch-norm statistics and optimizer state
    /// as `update:NAME` outputs.
    Compile {
        /// A .nn file or std::NAME.
        model: String,
        /// What to write.
        #[arg(long, value_enum)]
        target: Target,
        /// Output file (default: standard output).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// The input shape, comma-separated (default: the declared one, batch 1).
        #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "DIMS")]
        input_shape: Option<Vec<i64>>,
        /// Inference (running statistics, no dropout) or training graph.
        #[arg(long, value_enum, default_value = "infer")]
        mode: ModeArg,
        /// Number of classes (sets the network's `classes` parameter).
        #[arg(long, value_name = "K")]
        classes: Option<i64>,
        /// Which network of the file, when it has several.
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        /// Graph passes to run before writing, in order: `simplify`
        /// (identities, reshape and broadcast chains, constant folding),
        /// `fold-batch-norm` (an inference batch norm, or any per-channel
        /// scale and shift of the state, folded into the convolution before
        /// it: a scaled weight and one bias), `dead-taps` (convolution
        /// kernel taps that read only padding, as a 3x3 kernel on a 1x1
        /// input, are dropped), `cse` (common-subexpression elimination),
        /// `dce` (dead-code elimination), `default` (simplify,
        /// fold-batch-norm, dead-taps, cse, dce: what the cpu backend
        /// runs), or `none` (the graph as lowered).
        #[arg(long, value_delimiter = ',', default_value = "none", value_name = "PASSES", value_parser = parse_pass)]
        passes: Vec<PassArg>,
        /// Print to stderr how many nodes each pass removed and the fusion
        /// plan: the kernels of several ops, and why each op left alone was
        /// not fused.
        #[arg(long)]
        explain: bool,
    },
    /// Train a network as its file's training section says.
    ///
    /// Reads the data, trains with the optimizer, schedule, augmentation and
    /// early stopping of the training section, evaluates on the validation
    /// split every epoch and on the test set at the end, and writes
    /// metrics and checkpoints (last.safetensors and best.safetensors, each
    /// written atomically). Flags override the file. It names the machine
    /// first, so that epoch times can be told apart by CPU.
    Run(RunArgs),
    /// Measure a model's throughput on a backend: compile once, warm up, then
    /// the median of timed steps on one fixed random batch.
    ///
    /// Reports images per second, the median, fastest and slowest step,
    /// the time to lower, optimize and compile the graph, and the memory
    /// of its values as planned (buffers reused by liveness), at most alive
    /// at once, and without reuse. Parameters and state are not counted.
    /// It names the machine (CPU, family and model, widest vectors,
    /// threads): figures from different CPUs are not comparable.
    Bench(BenchArgs),
    /// Run a model on a batch of inputs, in evaluation mode.
    ///
    /// The input is a float32 .npy array whose shape is the model's input
    /// shape (its first axis is the batch); the output is the model's
    /// output, as float32 .npy. Weights are a safetensors file with the
    /// model's parameter names (a PyTorch state_dict saved with
    /// safetensors loads as it is).
    Infer {
        /// A .nn file or std::NAME.
        model: String,
        /// Weights (.safetensors).
        #[arg(long, value_name = "W")]
        weights: PathBuf,
        /// Input batch (.npy, float32).
        #[arg(long, value_name = "X")]
        input: PathBuf,
        /// Where to write the output (.npy).
        #[arg(long, value_name = "Y")]
        output: PathBuf,
        /// Which backend runs the model.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Number of classes (sets the network's `classes` parameter).
        #[arg(long, value_name = "K")]
        classes: Option<i64>,
        /// Which network of the file, when it has several.
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
    },
    /// Run the language server on stdin and stdout, for editors.
    ///
    /// Speaks the Language Server Protocol: an editor starts `nnc lsp` and
    /// gets the diagnostics of `nnc check` for every open .nn file as you
    /// type (imports read from the editor's unsaved buffers), cleared when
    /// fixed; on hover the shapes, parameters and multiply-accumulates of
    /// layers, tensors and networks; go to definition, references, the
    /// outline, completion and signature help. Logs go to stderr. See
    /// editors/nvim for Neovim.
    Lsp,
    /// Format .nn files in place, in the one layout every .nn file shares.
    ///
    /// Keeps your line breaks (a chain of layers stays grouped as you wrote
    /// it) and every comment. Sets the spaces within lines, four spaces of
    /// indentation per bracket, continuation lines of a chain under its
    /// first `->`, one statement per line, at most one blank line in a row,
    /// and aligns the end-of-line comments of consecutive lines inside the
    /// same brackets. Long lines are not broken.
    ///
    /// A directory stands for every .nn file under it; `-` formats standard
    /// input to standard output. A file that does not parse is reported and
    /// left as it is. Exit code 1 when a file does not parse, a directory
    /// holds no .nn file, or, with --check, a file is not formatted.
    Fmt {
        /// The .nn files or directories to format, or `-`.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Change nothing: print a diff for each file that is not formatted.
        #[arg(long)]
        check: bool,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A .nn file or std::NAME.
    model: String,
    /// The input shape, comma-separated (default: the declared one, batch 1).
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "DIMS")]
    input_shape: Option<Vec<i64>>,
    /// Number of classes (sets the network's `classes` parameter).
    #[arg(long, value_name = "K")]
    classes: Option<i64>,
    /// Which network of the file, when it has several.
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// Inference, or a training step (forward, loss, backward and an SGD
    /// update with momentum 0.9, as one graph).
    #[arg(long, value_enum, default_value = "infer")]
    mode: ModeArg,
    /// Which backend runs it.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
    /// Untimed runs first.
    #[arg(long, default_value = "2", value_name = "N")]
    warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value = "10", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Print JSON (images_per_second, step_ms, compile_ms, peak_bytes, ...).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The .nn file with a network and its training section.
    file: String,
    /// Where the data set is (a folder; overrides the file's `path`).
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Number of epochs (overrides the file's `epochs`; at least 1). With
    /// --resume, a larger number continues a finished run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    epochs: Option<u64>,
    /// Which backend trains (default: cpu, the fastest there is).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Where to write metrics, one JSON object per line (default: in the
    /// checkpoint directory).
    #[arg(long, value_name = "FILE.jsonl")]
    metrics: Option<PathBuf>,
    /// Where checkpoints go (default: runs/NETWORK).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Continue from DIR/last.safetensors (after Ctrl-C, a kill or the last
    /// epoch). The network, optimizer, batch size, --limit and seed must be
    /// those of the run that wrote it; nothing is written until they are.
    #[arg(long)]
    resume: bool,
    /// Seed of every random choice (overrides the file's `seed`).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Which network of the file, when it has several.
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// Train on the first N training images only (a quick smoke run; the
    /// validation split is taken from these N).
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    limit: Option<usize>,
}

/// A `--passes` item: a pass, the default pipeline, or nothing.
#[derive(Clone, Debug)]
enum PassArg {
    None,
    Default,
    One(nnc::passes::Pass),
}

fn parse_pass(s: &str) -> Result<PassArg, String> {
    match s {
        "none" => Ok(PassArg::None),
        "default" => Ok(PassArg::Default),
        _ => nnc::passes::Pass::from_name(s)
            .map(PassArg::One)
            .ok_or_else(|| {
                let names: Vec<&str> = nnc::passes::Pass::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown pass `{s}`; the passes are {}, default, none",
                    names.join(", ")
                )
            }),
    }
}

fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a run needs at least 1 image".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Target {
    /// The graph IR as text.
    Ir,
    /// Graphviz (`dot -Tsvg`), layers and blocks as clusters.
    Dot,
    /// The kernel IR: the loop nests and matrix products the cpu backend
    /// compiles, one kernel per value that leaves its fusion group.
    Kernels,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Infer,
    Train,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    /// Native code for the host CPU, generated with Cranelift.
    Cpu,
    /// The ndarray interpreter: slow, simple, the oracle of the others.
    Reference,
}

impl BackendArg {
    fn backend(self) -> Box<dyn nnc::backend::Backend> {
        let name = match self {
            BackendArg::Cpu => "cpu",
            BackendArg::Reference => "reference",
        };
        nnc::backend::by_name(name).expect("every --backend value names a backend")
    }
}

fn main() -> ExitCode {
    // The hook itself must not panic (stderr may be closed or full).
    std::panic::set_hook(Box::new(|info| {
        say!(
            "error: internal compiler error: {info}\n\
             note: this is a bug in nnc; please report it with the input that caused it"
        );
    }));
    // Usage errors are user errors (exit 1), not clap's default 2, which
    // the contract keeps for internal errors.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { USER_ERROR } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
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
        Command::Compile {
            model,
            target,
            output,
            input_shape,
            mode,
            classes,
            network,
            passes,
            explain,
        } => compile(
            &model,
            target,
            output.as_deref(),
            input_shape,
            mode,
            classes,
            network.as_deref(),
            (&passes, explain),
        ),
        Command::Run(args) => run_training(&args),
        Command::Bench(args) => bench(&args),
        Command::Infer {
            model,
            weights,
            input,
            output,
            backend,
            classes,
            network,
        } => infer(
            backend.backend().as_ref(),
            &model,
            &weights,
            &input,
            &output,
            classes,
            network.as_deref(),
        ),
        Command::Lsp => lsp(),
        Command::Fmt { files, check } => nnc::with_big_stack(|| fmt(&files, check)),
    }
}

fn fmt(paths: &[PathBuf], check: bool) -> ExitCode {
    use nnc::format;
    if paths.iter().any(|p| p.as_os_str() == "-") {
        if paths.len() > 1 {
            return fail("`-` (standard input) cannot be mixed with files");
        }
        let mut text = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            return io_fail(&format!("cannot read standard input: {e}"));
        }
        return match format::format(&text) {
            Ok(out) if check && out != text => {
                let _ = std::io::stdout()
                    .write_all(format::diff::unified("<stdin>", &text, &out).as_bytes());
                ExitCode::from(USER_ERROR)
            }
            Ok(_) if check => ExitCode::SUCCESS,
            Ok(out) => emit(&out),
            Err(e) => fmt_error("<stdin>", text, e),
        };
    }
    let files = match format::files::nn_files(paths) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    if files.is_empty() {
        // An empty directory would make `--check` pass on nothing.
        return fail("no .nn files in the given directories");
    }
    let (mut changed, mut unchanged, mut failed, mut internal) = (0usize, 0usize, false, false);
    for path in &files {
        let name = path.display().to_string();
        let text = match std::fs::read(path).map(String::from_utf8) {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                say!(
                    "error: `{name}` is not valid UTF-8 (byte {}); left unchanged",
                    e.utf8_error().valid_up_to()
                );
                failed = true;
                continue;
            }
            Err(e) => {
                say!("error: cannot read `{name}`: {e}");
                failed = true;
                continue;
            }
        };
        let out = match format::format(&text) {
            Ok(out) => out,
            Err(e) => {
                internal |= matches!(e, format::Error::Internal(_));
                fmt_error(&name, text, e);
                failed = true;
                continue;
            }
        };
        if out == text {
            unchanged += 1;
        } else if check {
            changed += 1;
            let _ =
                std::io::stdout().write_all(format::diff::unified(&name, &text, &out).as_bytes());
        } else {
            if let Err(e) = format::files::write_atomically(path, &out) {
                say!("error: cannot write `{name}`: {e}");
                failed = true;
                continue;
            }
            changed += 1;
            say!("formatted {name}");
        }
    }
    let files_word = |n: usize| if n == 1 { "file" } else { "files" };
    if check {
        if changed > 0 {
            say!(
                "{changed} {} not formatted, {unchanged} formatted; `nnc fmt` without --check rewrites them",
                files_word(changed)
            );
        } else if !failed {
            say!("{unchanged} {} formatted", files_word(unchanged));
        }
    } else {
        say!(
            "{changed} {} formatted, {unchanged} already formatted",
            files_word(changed)
        );
    }
    if internal {
        ExitCode::from(INTERNAL_ERROR)
    } else if failed || (check && changed > 0) {
        ExitCode::from(USER_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// Reports why `text` was not formatted: its syntax errors, or the
/// formatter's own failure.
fn fmt_error(name: &str, text: String, error: nnc::format::Error) -> ExitCode {
    match error {
        nnc::format::Error::Syntax => {
            let mut sources = nnc::syntax::source::SourceMap::new();
            let id = sources.add(name, nnc::syntax::source::Origin::Memory, text.clone());
            let (_, diags) = nnc::syntax::parse(id, &sources.get(id).text);
            let options = driver::terminal_render_options();
            let _ =
                std::io::stderr().write_all(diag::render_all(&diags, &sources, options).as_bytes());
            say!("`{name}` was left unchanged: it does not parse");
            ExitCode::from(USER_ERROR)
        }
        nnc::format::Error::Internal(why) => {
            say!("internal error: formatting `{name}` went wrong ({why}); the file was left unchanged");
            ExitCode::from(INTERNAL_ERROR)
        }
    }
}

fn lsp() -> ExitCode {
    let served = nnc::with_big_stack(|| {
        let stdin = std::io::stdin();
        nnc::lsp::serve(
            &mut std::io::BufReader::new(stdin.lock()),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        )
    });
    match served {
        Ok(nnc::lsp::Ended::Clean) => ExitCode::SUCCESS,
        // LSP: `exit` without `shutdown` ends with status 1.
        Ok(nnc::lsp::Ended::Abrupt) => ExitCode::from(USER_ERROR),
        Err(e) => {
            eprintln!("nnc lsp: cannot write to the editor: {e}");
            ExitCode::from(USER_ERROR)
        }
    }
}

fn run_training(args: &RunArgs) -> ExitCode {
    use std::io::IsTerminal;
    let mut prog = nnc::check::program::Program::new();
    // Check the whole file first: training starts only from a clean program.
    let (check_prog, checked) = driver::check_paths(&[std::path::Path::new(&args.file)]);
    if diag::has_errors(&checked.diags) {
        return report(&check_prog, &checked.diags);
    }
    let probe = match driver::load_model(
        &mut prog,
        &args.file,
        args.network.as_deref(),
        &BuildOptions::default(),
    ) {
        Ok(l) => l,
        Err(diags) => return report(&prog, &diags),
    };
    let Some(cfg) = probe.train.clone() else {
        return fail(&format!(
            "`{}` has no training section for `{}`\n\
             help: add one after the network; every setting but `data` has a default \
             (docs/language.md lists them):\n\n    \
             train {{\n        data = fashion_mnist()\n        optimizer = sgd(lr=0.1, momentum=0.9)\n        \
             epochs = 10\n    }}",
            args.file, probe.model.name
        ));
    };
    let network = probe.model.name.clone();
    let opts = nnc::train::run::RunOptions {
        data: args.data.clone(),
        epochs: args.epochs,
        metrics: args.metrics.clone(),
        checkpoint_dir: args
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(&network)),
        resume: args.resume,
        seed: args.seed,
        progress_bar: std::io::stderr().is_terminal(),
        limit: args.limit,
        quiet: false,
        backend: args
            .backend
            .unwrap_or(BackendArg::Cpu)
            .backend()
            .name()
            .to_string(),
    };
    nnc::train::interrupt::install();
    match nnc::train::run::run(&probe, &cfg, &opts) {
        Ok(report) => {
            use nnc::train::run::Outcome;
            if !report.epochs.is_empty() {
                say!("{}", nnc::train::run::table(&report).trim_end());
            }
            match report.outcome {
                Outcome::Finished => {
                    say!(
                        "{:.1} s; checkpoints and metrics in {}",
                        report.seconds,
                        report.checkpoint_dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Outcome::AlreadyFinished { .. } => ExitCode::SUCCESS,
                Outcome::Interrupted {
                    epochs_done,
                    batches_done,
                    batches,
                } => {
                    let place = if batches_done > 0 {
                        format!(
                            "in epoch {} after {batches_done} of {batches} batches",
                            epochs_done + 1
                        )
                    } else {
                        format!("after epoch {epochs_done}")
                    };
                    say!(
                        "interrupted {place}; the checkpoint is `{}`\nto continue: {}",
                        report.checkpoint_dir.join("last.safetensors").display(),
                        resume_command(args)
                    );
                    ExitCode::from(INTERRUPTED)
                }
            }
        }
        Err(e) => {
            let internal = e.is_internal();
            let mut d = Diagnostic::error(e.code, e.message);
            if let Some(setting) = e.setting {
                d = d.at(cfg.span_of(setting), format!("`{setting}` is set here"));
            }
            if let Some(help) = e.help {
                d = d.with_help(help);
            }
            let code = report(&prog, &[d]);
            if internal {
                ExitCode::from(INTERNAL_ERROR)
            } else {
                code
            }
        }
    }
}

/// The command that continues an interrupted run: the same flags, plus
/// `--resume`.
fn resume_command(args: &RunArgs) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-:=+,".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut parts = vec!["nnc".to_string(), "run".to_string(), quote(&args.file)];
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(format!("--{name}"));
            parts.push(quote(&v));
        }
    };
    flag("network", args.network.clone());
    flag("data", args.data.as_ref().map(|p| p.display().to_string()));
    flag("epochs", args.epochs.map(|e| e.to_string()));
    flag(
        "metrics",
        args.metrics.as_ref().map(|p| p.display().to_string()),
    );
    flag(
        "checkpoint-dir",
        args.checkpoint_dir
            .as_ref()
            .map(|p| p.display().to_string()),
    );
    flag("seed", args.seed.map(|s| s.to_string()));
    flag("limit", args.limit.map(|l| l.to_string()));
    parts.push("--resume".into());
    parts.join(" ")
}

fn build_options(
    input_shape: Option<Vec<i64>>,
    classes: Option<i64>,
) -> Result<BuildOptions, String> {
    if let Some(shape) = &input_shape {
        if let Some(bad) = shape.iter().find(|&&d| d < 1) {
            return Err(format!(
                "--input-shape sizes must be at least 1, but one is {bad}"
            ));
        }
    }
    Ok(BuildOptions {
        input_shape,
        params: classes
            .map(|k| vec![("classes".to_string(), Value::int(k))])
            .unwrap_or_default(),
    })
}

/// Writes a command's result to standard output. A closed pipe
/// (`nnc compile ... | head -1`) ends the program quietly, as other
/// command-line tools do; any other failure is an I/O error.
fn emit(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => io_fail(&format!("cannot write to standard output: {e}")),
    }
}

/// An I/O failure: a file or stream that cannot be written or read.
fn io_fail(message: &str) -> ExitCode {
    say!("error[{}]: {message}", nnc::diag_codes::IO);
    ExitCode::from(USER_ERROR)
}

/// Prints a problem that has no place in a source file.
fn fail(message: &str) -> ExitCode {
    say!("error: {message}");
    ExitCode::from(USER_ERROR)
}

#[allow(clippy::too_many_arguments)]
fn compile(
    model: &str,
    target: Target,
    output: Option<&std::path::Path>,
    input_shape: Option<Vec<i64>>,
    mode: ModeArg,
    classes: Option<i64>,
    network: Option<&str>,
    (passes, explain): (&[PassArg], bool),
) -> ExitCode {
    let options = match build_options(input_shape, classes) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let mut prog = nnc::check::program::Program::new();
    let loaded = match driver::load_model(&mut prog, model, network, &options) {
        Ok(l) => l,
        Err(diags) => return report(&prog, &diags),
    };
    let pipeline: Vec<nnc::passes::Pass> = passes
        .iter()
        .flat_map(|p| match p {
            PassArg::None => Vec::new(),
            PassArg::Default => nnc::passes::DEFAULT.to_vec(),
            PassArg::One(p) => vec![*p],
        })
        .collect();
    let lowered = match mode {
        ModeArg::Infer => loaded.lower(nnc::ir::Mode::Infer),
        ModeArg::Train => loaded.lower_step(),
    };
    let mut graph = match lowered {
        Ok(g) => g,
        Err(d) => return report(&prog, &[d]),
    };
    for pass in pipeline {
        let count = pass.run(&mut graph);
        if explain {
            say!("{}; {} nodes", pass.describe(count), graph.nodes.len());
        }
    }
    if explain {
        let plan = nnc::passes::fusion::plan(&graph);
        let _ = std::io::stderr().write_all(nnc::passes::fusion::explain(&graph, &plan).as_bytes());
    }
    let text = match target {
        Target::Ir => nnc::ir::text::print(&graph),
        Target::Dot => nnc::ir::dot::print(&graph),
        Target::Kernels => {
            match nnc::kernel::program_of(&graph, nnc::backend::cpu::host_target()) {
                Ok(lowered) => lowered.program.to_string(),
                Err(e) => {
                    say!("internal error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    match output {
        None => emit(&text),
        Some(path) => match nnc::weights::atomic::write(path, text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => io_fail(&format!("cannot write `{}`: {e}", path.display())),
        },
    }
}

fn infer(
    backend: &dyn nnc::backend::Backend,
    model: &str,
    weights: &std::path::Path,
    input: &std::path::Path,
    output: &std::path::Path,
    classes: Option<i64>,
    network: Option<&str>,
) -> ExitCode {
    let x = match nnc::weights::npy::read(input) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let shape: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
    let options = match build_options(Some(shape), classes) {
        Ok(o) => o,
        Err(e) => return fail(&format!("`{}`: {e}", input.display())),
    };
    let mut prog = nnc::check::program::Program::new();
    let loaded = match driver::load_model(&mut prog, model, network, &options) {
        Ok(l) => l,
        Err(diags) => return report(&prog, &diags),
    };
    let graph = match loaded.lower(nnc::ir::Mode::Infer) {
        Ok(g) => g,
        Err(d) => return report(&prog, &[d]),
    };
    let tensors = match nnc::weights::safetensors::load_for(weights, &graph) {
        Ok(w) => w,
        Err(e) => {
            say!(
                "error: the weights in `{}` do not fit `{}`:",
                e.file,
                loaded.model.name
            );
            for p in &e.problems {
                say!("  - {p}");
            }
            return ExitCode::from(USER_ERROR);
        }
    };
    // The backend owns the weights; the host feeds the batch and reads the
    // logits back.
    let state = tensors
        .into_iter()
        .filter(|(k, _)| !nnc::weights::is_ignored_key(k))
        .collect();
    let mut exe = backend.instantiate(state);
    let ran = exe.compile(&graph).and_then(|entry| {
        let data = exe
            .handle(entry, nnc::ir::Role::Data)
            .ok_or_else(|| nnc::backend::BackendError::Feed("the model has no input".into()))?;
        exe.run(entry, vec![(data, x)], 0)?;
        Ok(exe.read(entry, &nnc::ir::Output::Logits))
    });
    let y = match ran {
        Ok(Some(y)) => y,
        Ok(None) => return fail("the model produced no output"),
        Err(e) => return fail(&e.to_string()),
    };
    match nnc::weights::npy::write(output, &y) {
        Ok(()) => {
            say!(
                "wrote {} {:?} to {}",
                loaded.model.name,
                y.shape(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => io_fail(&e),
    }
}

fn bench(args: &BenchArgs) -> ExitCode {
    let options = match build_options(args.input_shape.clone(), args.classes) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let mut prog = nnc::check::program::Program::new();
    let loaded = match driver::load_model(&mut prog, &args.model, args.network.as_deref(), &options)
    {
        Ok(l) => l,
        Err(diags) => return report(&prog, &diags),
    };
    let opts = nnc::bench::Options {
        mode: match args.mode {
            ModeArg::Infer => nnc::ir::Mode::Infer,
            ModeArg::Train => nnc::ir::Mode::Train,
        },
        warmup: args.warmup,
        steps: args.steps as usize,
        seed: 0,
    };
    match nnc::bench::run(&loaded, args.backend.backend().as_ref(), &opts) {
        Ok(r) if args.json => {
            let mut text = serde_json::to_string_pretty(&r.to_json()).unwrap_or_default();
            text.push('\n');
            emit(&text)
        }
        Ok(r) => emit(&r.to_text()),
        Err(e) => fail(&e),
    }
}

fn check(files: &[PathBuf], deny_warnings: bool) -> ExitCode {
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let (prog, checked) = driver::check_paths(&paths);
    let options = driver::terminal_render_options();
    let _ = std::io::stderr()
        .write_all(diag::render_all(&checked.diags, &prog.sources, options).as_bytes());
    let failed = diag::has_errors(&checked.diags) || (deny_warnings && !checked.diags.is_empty());
    if failed {
        ExitCode::from(USER_ERROR)
    } else {
        let n = files.len();
        say!(
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
    let options = match build_options(input_shape, classes) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let mut prog = nnc::check::program::Program::new();
    match driver::load_model(&mut prog, model, network, &options) {
        Ok(loaded) => {
            let s = nnc::summary::summarize(&loaded.model, &loaded.freeze);
            // The graphs' memory, planned: values only (parameters, state
            // and the batch are counted above).
            let memory = nnc::bench::memory(&loaded).ok();
            if json {
                let mut value = nnc::summary::to_json(&s);
                if let Some([infer, train]) = &memory {
                    let plan = |p: &nnc::passes::memory::MemoryPlan| serde_json::json!({"peak_bytes": p.peak_bytes, "live_bytes": p.live_bytes, "total_bytes": p.total_bytes});
                    value["memory"] =
                        serde_json::json!({"inference": plan(infer), "training_step": plan(train)});
                }
                let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
                text.push('\n');
                emit(&text)
            } else {
                let mut text = nnc::summary::to_text(&s);
                if let Some([infer, train]) = &memory {
                    let show = nnc::bench::show_bytes;
                    text.push_str(&format!(
                        "planned memory     inference {} ({} without reuse), training step {} ({} without reuse)\n",
                        show(infer.peak_bytes),
                        show(infer.total_bytes),
                        show(train.peak_bytes),
                        show(train.total_bytes)
                    ));
                }
                emit(&text)
            }
        }
        Err(diags) => report(&prog, &diags),
    }
}

fn report(prog: &nnc::check::program::Program, diags: &[Diagnostic]) -> ExitCode {
    let options = driver::terminal_render_options();
    let _ = std::io::stderr().write_all(diag::render_all(diags, &prog.sources, options).as_bytes());
    ExitCode::from(USER_ERROR)
}
