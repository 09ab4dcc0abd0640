//! Name patterns with `*` (`"features.*"`, `"*.bias"`), as `freeze`, `init`
//! keys and summaries match parameter names.

/// Whether `name` matches `pattern`, where `*` matches any run of
/// characters (dots included) and everything else matches itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    // Greedy matching that backtracks only to the last `*`: O(len(pattern)
    // * len(name)) at worst, where trying every split at every `*` is
    // exponential in the number of stars.
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last star take one more character and retry.
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_any_run() {
        assert!(matches("features.*", "features.0.weight"));
        assert!(matches("*.bias", "fc.bias"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "a.x.b.y.c"));
        assert!(!matches("a*b*c", "a.x.c.y.b"));
        assert!(!matches("fc.bias", "fc.bias2"));
        assert!(matches("layer?.weight", "layer?.weight"));
        assert!(!matches("*.weight", "fc.bias"));
    }

    #[test]
    fn many_stars_stay_fast() {
        // Exponential for the naive split-at-every-star matcher.
        let pattern = format!("{}b", "*a".repeat(40));
        let name = "a".repeat(5000);
        assert!(!matches(&pattern, &name));
    }
}
