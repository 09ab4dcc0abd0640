//! Every diagnostic code nnc emits, with what it means. Codes are stable:
//! tests, editors and users' searches depend on them.
//!
//! E01xx syntax, E02xx names, E03xx values and types, E04xx shapes,
//! E05xx the training section, E06xx weights, arrays and execution,
//! W00xx warnings.

// ---- syntax ----
/// The text does not follow the grammar.
pub const SYNTAX: &str = "E0101";
/// Brackets nest deeper than the parser allows.
pub const NESTING_TOO_DEEP: &str = "E0102";
/// A numeric literal does not fit in 64 bits.
pub const NUMBER_TOO_LARGE: &str = "E0103";
/// The file is not UTF-8.
pub const INVALID_UTF8: &str = "E0104";
/// The file cannot be read.
pub const UNREADABLE: &str = "E0105";

// ---- names ----
/// A value name that is not defined.
pub const UNKNOWN_NAME: &str = "E0201";
/// A layer, block or network name that is not defined.
pub const UNKNOWN_LAYER: &str = "E0202";
/// Two definitions with one name.
pub const DUPLICATE_DEFINITION: &str = "E0203";
/// An import of something that does not exist.
pub const UNKNOWN_IMPORT: &str = "E0204";
/// Files that import each other.
pub const IMPORT_CYCLE: &str = "E0205";
/// A block that uses itself, directly or through others.
pub const RECURSIVE_BLOCK: &str = "E0206";
/// Two layers whose parameters would have the same name, or a layer named
/// as the scope of another (`features.0` and `features.0.0`).
pub const DUPLICATE_LAYER_NAME: &str = "E0207";
/// A value defined twice in one body.
pub const DUPLICATE_VALUE: &str = "E0208";
/// A named argument the layer does not take.
pub const UNKNOWN_ARGUMENT: &str = "E0209";
/// A required argument is missing.
pub const MISSING_ARGUMENT: &str = "E0210";
/// One argument given twice.
pub const DUPLICATE_ARGUMENT: &str = "E0211";
/// More positional arguments than parameters.
pub const TOO_MANY_ARGUMENTS: &str = "E0212";
/// The network asked for does not exist, or the choice is ambiguous.
pub const NETWORK_NOT_FOUND: &str = "E0213";

// ---- values and types ----
/// A value of the wrong type.
pub const TYPE_MISMATCH: &str = "E0301";
/// A value outside the range a layer or setting accepts.
pub const OUT_OF_RANGE: &str = "E0302";
/// A type name that does not exist.
pub const UNKNOWN_TYPE: &str = "E0303";
/// A tensor where a number is needed, or the reverse.
pub const EXPECTED_TENSOR: &str = "E0304";
/// Division or remainder by zero.
pub const DIVISION_BY_ZERO: &str = "E0305";
/// A condition on a symbolic dimension that cannot be decided.
pub const UNDECIDABLE: &str = "E0306";
/// A size or count that overflows 64 bits.
pub const OVERFLOW: &str = "E0307";
/// A network that expands to too many layers or nests blocks too deeply.
pub const TOO_LARGE: &str = "E0308";
/// A definition without `input` or `return`.
pub const MALFORMED_DEFINITION: &str = "E0309";
/// A list index outside the list.
pub const INDEX_OUT_OF_RANGE: &str = "E0310";
/// A computed layer name (`as "b{i}"`) that is not a name: a value in braces
/// that is not a whole number or a string, or a result with characters
/// other than letters, digits and `_`.
pub const BAD_LAYER_NAME: &str = "E0311";

// ---- shapes ----
/// A layer applied to a tensor of the wrong rank.
pub const RANK_MISMATCH: &str = "E0401";
/// Channel counts that do not agree (conv `in_channels`, groups).
pub const CHANNEL_MISMATCH: &str = "E0402";
/// A kernel larger than its padded input.
pub const KERNEL_TOO_LARGE: &str = "E0403";
/// An output size of zero or less.
pub const EMPTY_OUTPUT: &str = "E0404";
/// Elementwise operands whose shapes do not broadcast.
pub const SHAPE_MISMATCH: &str = "E0405";
/// Concatenated tensors that differ off the concatenation axis.
pub const CONCAT_MISMATCH: &str = "E0406";
/// A linear layer whose declared input width is not what flows in.
pub const WIDTH_MISMATCH: &str = "E0407";
/// A value whose shape differs from its annotation or declared output.
pub const ANNOTATION_MISMATCH: &str = "E0408";
/// A block or network called on a tensor that does not fit its `input`.
pub const INPUT_MISMATCH: &str = "E0409";
/// A size that must divide another and does not (maxout, groups).
pub const NOT_DIVISIBLE: &str = "E0410";
/// A reshape that changes the number of elements.
pub const RESHAPE_MISMATCH: &str = "E0411";
/// A size that must be known but is symbolic.
pub const SYMBOLIC_SIZE: &str = "E0412";

// ---- training section ----
/// A setting the training section does not know.
pub const UNKNOWN_SETTING: &str = "E0501";
/// A setting that must be given.
pub const MISSING_SETTING: &str = "E0502";
/// A setting of the wrong kind or out of range.
pub const INVALID_SETTING: &str = "E0503";
/// A learning-rate milestone at or after the last epoch.
pub const MILESTONE_AFTER_END: &str = "E0504";
/// A warm-up at least as long as the run.
pub const WARMUP_TOO_LONG: &str = "E0505";
/// A monitored metric that nothing computes.
pub const UNKNOWN_METRIC: &str = "E0506";
/// A setting given twice.
pub const DUPLICATE_SETTING: &str = "E0507";
/// A frozen-parameter pattern that matches no parameter, or freezes all.
pub const BAD_FREEZE: &str = "E0508";

// ---- weights, arrays and execution ----
/// A weights file that cannot be read or does not fit the model; a
/// checkpoint that does not fit the run that `--resume` would continue.
pub const WEIGHTS: &str = "E0601";
/// An array file (`.npy`) that cannot be read or has the wrong shape.
pub const ARRAY: &str = "E0602";
/// A model that cannot be lowered or run.
pub const LOWERING: &str = "E0603";
/// A data set that cannot be read, or that does not fit the network.
pub const DATA: &str = "E0604";
/// A training run whose loss or gradients became NaN or infinite.
pub const NON_FINITE: &str = "E0605";
/// A file or folder that cannot be created, read or written (a checkpoint,
/// the metrics file, an output array): the path and the OS error say why.
pub const IO: &str = "E0606";
/// A bug in nnc: an invariant that does not hold. Exit code 2.
pub const INTERNAL: &str = "E0699";

// ---- warnings ----
/// A value that is computed and never used.
pub const UNUSED_VALUE: &str = "W0001";
/// A block parameter that the body never reads.
pub const UNUSED_PARAMETER: &str = "W0002";
/// An import nothing uses.
pub const UNUSED_IMPORT: &str = "W0003";
/// Statements after `return`.
pub const UNREACHABLE: &str = "W0004";
/// A layer or setting that does nothing as written.
pub const NO_EFFECT: &str = "W0005";
/// A softmax (or log-softmax) at the end of a network trained with
/// cross-entropy, which applies log-softmax itself.
pub const SOFTMAX_BEFORE_LOSS: &str = "W0006";
