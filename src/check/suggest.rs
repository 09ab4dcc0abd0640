//! "Did you mean ...?" suggestions by edit distance.

/// The candidate closest to `name`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        // `BatchNorm2d` and `batchnorm` are spellings of `batch_norm`.
        let squashed = |s: &str| s.to_ascii_lowercase().replace('_', "");
        let d = if squashed(c) == squashed(name).trim_end_matches("2d").trim_end_matches("1d") {
            0
        } else {
            distance(&lower, &c.to_ascii_lowercase())
        };
        if d <= limit && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The layer nnc has for a PyTorch or Keras name that is not a spelling of
/// it (`Conv2d` and `BatchNorm2d` are: [`did_you_mean`] finds them), with
/// how to write it.
pub fn foreign_layer(name: &str) -> Option<&'static str> {
    Some(match name {
        "view" | "View" | "Reshape" => {
            "`view` is `reshape([N, ...])`, and `view(N, -1)` is `flatten`"
        }
        "Dense" => "Keras' `Dense(n)` is `linear(n)`",
        "BatchNormalization" => "Keras' `BatchNormalization` is `batch_norm`",
        "MaxPooling2D" | "MaxPool2D" => "Keras' `MaxPooling2D(k)` is `max_pool(k)`",
        "AveragePooling2D" | "AvgPool2D" => "Keras' `AveragePooling2D(k)` is `avg_pool(k)`",
        "GlobalAveragePooling2D" | "GlobalAvgPool2D" => {
            "Keras' `GlobalAveragePooling2D` is `global_avg_pool` ([N, C, H, W] to [N, C])"
        }
        "Activation" => "write the activation itself: `-> relu`",
        "Sequential" => "a sequence is a chain: `x -> conv2d(16, 3) -> relu -> ...`",
        "Identity" => "leave the step out: a chain may end at a value, as `return x`",
        _ => return None,
    })
}

/// nnc's name for a parameter that PyTorch or Keras names otherwise
/// (`kernel_size=`, Keras' `filters=`), and whose name it is.
pub fn foreign_parameter(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "out_channels" | "out_features" => ("out", "PyTorch's"),
        "kernel_size" => ("kernel", "PyTorch's"),
        "negative_slope" => ("slope", "PyTorch's"),
        "dim" => ("axis", "PyTorch's"),
        "output_size" => ("size", "PyTorch's"),
        "filters" | "units" => ("out", "Keras'"),
        "strides" => ("stride", "Keras'"),
        "rate" => ("p", "Keras'"),
        _ => return None,
    })
}

/// Levenshtein distance with adjacent transpositions counted as one edit.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 3 {
        return usize::MAX;
    }
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        let ops = ["batch_norm", "conv2d", "relu", "max_pool", "linear"];
        assert_eq!(did_you_mean("batchnorm", ops), Some("batch_norm"));
        assert_eq!(did_you_mean("BatchNorm2d", ops), Some("batch_norm"));
        assert_eq!(did_you_mean("conv2", ops), Some("conv2d"));
        assert_eq!(did_you_mean("rleu", ops), Some("relu"));
        assert_eq!(did_you_mean("transformer", ops), None);
    }
}
