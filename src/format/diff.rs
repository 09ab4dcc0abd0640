//! Line differences, for `nnc fmt --check` (a unified diff) and for the
//! language server's formatting edits (one edit per changed run of lines,
//! so that the editor keeps the cursor and marks of the lines in between).

use std::ops::Range;

/// A run of changed lines: `old` (line indices in the old text) becomes
/// `new` (in the new text). One of the two may be empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    pub old: Range<usize>,
    pub new: Range<usize>,
}

/// Beyond this many changed lines the middle becomes one hunk, so that two
/// unrelated texts cost linear memory instead of quadratic.
const MAX_EDITS: usize = 2_000;

/// The changed runs of lines from `old` to `new` (Myers' shortest edit
/// script), in order.
pub fn hunks(old: &[&str], new: &[&str]) -> Vec<Hunk> {
    // Common head and tail first: formatting changes few lines.
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    if a.is_empty() && b.is_empty() {
        return Vec::new();
    }
    let Some(same) = matching_lines(a, b) else {
        return vec![Hunk {
            old: head..head + a.len(),
            new: head..head + b.len(),
        }];
    };
    // Between consecutive matching lines lie the hunks.
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    for (x, y) in same.into_iter().chain(std::iter::once((a.len(), b.len()))) {
        if x > i || y > j {
            out.push(Hunk {
                old: head + i..head + x,
                new: head + j..head + y,
            });
        }
        (i, j) = (x + 1, y + 1);
    }
    out
}

/// The pairs of equal lines of a shortest edit script, or `None` past
/// [`MAX_EDITS`].
fn matching_lines(a: &[&str], b: &[&str]) -> Option<Vec<(usize, usize)>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let offset = n + m + 1;
    let mut v = vec![0isize; 2 * offset as usize + 1];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let at = |k: isize| (k + offset) as usize;
    for d in 0..=(n + m).min(MAX_EDITS as isize) {
        trace.push(v.clone());
        for k in (-d..=d).step_by(2) {
            let mut x = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
                v[at(k + 1)]
            } else {
                v[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                return Some(backtrack(&trace, n, m, at));
            }
        }
    }
    None
}

fn backtrack(
    trace: &[Vec<isize>],
    n: isize,
    m: isize,
    at: impl Fn(isize) -> usize,
) -> Vec<(usize, usize)> {
    let mut same = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let k = x - y;
        let prev_k = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = if d == 0 { 0 } else { v[at(prev_k)] };
        let prev_y = if d == 0 { 0 } else { prev_x - prev_k };
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            same.push((x as usize, y as usize));
        }
        (x, y) = (prev_x, prev_y);
    }
    same.reverse();
    same
}

/// A unified diff of two texts with three lines of context, headed by
/// `name`; empty when they are equal.
pub fn unified(name: &str, old: &str, new: &str) -> String {
    const CONTEXT: usize = 3;
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let all = hunks(&a, &b);
    if all.is_empty() {
        return String::new();
    }
    let mut out = format!("--- {name}\n+++ {name} (formatted)\n");
    let mut i = 0;
    while i < all.len() {
        // Hunks whose contexts touch print as one.
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].old.start - all[j].old.end <= 2 * CONTEXT {
            j += 1;
        }
        let old_start = all[i].old.start.saturating_sub(CONTEXT);
        let old_end = (all[j].old.end + CONTEXT).min(a.len());
        let new_start = all[i].new.start - (all[i].old.start - old_start);
        let new_end = all[j].new.end + (old_end - all[j].old.end);
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            old_start + 1,
            old_end - old_start,
            new_start + 1,
            new_end - new_start
        ));
        let mut line = old_start;
        for h in &all[i..=j] {
            for l in &a[line..h.old.start] {
                out.push_str(&format!(" {l}\n"));
            }
            for l in &a[h.old.clone()] {
                out.push_str(&format!("-{l}\n"));
            }
            for l in &b[h.new.clone()] {
                out.push_str(&format!("+{l}\n"));
            }
            line = h.old.end;
        }
        for l in &a[line..old_end] {
            out.push_str(&format!(" {l}\n"));
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies hunks to `old`, as an editor applies edits.
    fn apply(old: &[&str], new: &[&str], hunks: &[Hunk]) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = 0;
        for h in hunks {
            out.extend(old[at..h.old.start].iter().map(|s| s.to_string()));
            out.extend(new[h.new.clone()].iter().map(|s| s.to_string()));
            at = h.old.end;
        }
        out.extend(old[at..].iter().map(|s| s.to_string()));
        out
    }

    #[test]
    fn hunks_turn_the_old_lines_into_the_new() {
        let cases: [(&str, &str); 6] = [
            ("a b c", "a b c"),
            ("a b c d e", "a x c d y"),
            ("a b c", ""),
            ("", "a b"),
            ("a b c a b b a", "c b a b a c"),
            ("x a a a y", "a a z a"),
        ];
        for (old, new) in cases {
            let (a, b): (Vec<&str>, Vec<&str>) = (
                old.split_whitespace().collect(),
                new.split_whitespace().collect(),
            );
            let h = hunks(&a, &b);
            assert_eq!(apply(&a, &b, &h), b, "{old:?} -> {new:?}: {h:?}");
            for w in h.windows(2) {
                assert!(w[0].old.end < w[1].old.start, "hunks touch: {h:?}");
            }
        }
        // Changed lines far apart are separate hunks.
        let a = ["1", "2", "3", "4", "5"];
        let b = ["x", "2", "3", "4", "y"];
        assert_eq!(
            hunks(&a, &b),
            vec![
                Hunk {
                    old: 0..1,
                    new: 0..1
                },
                Hunk {
                    old: 4..5,
                    new: 4..5
                }
            ]
        );
    }

    #[test]
    fn past_the_edit_limit_the_middle_is_one_hunk() {
        let a: Vec<String> = (0..3 * MAX_EDITS).map(|i| format!("a{i}")).collect();
        let b: Vec<String> = (0..3 * MAX_EDITS).map(|i| format!("b{i}")).collect();
        let (a, b): (Vec<&str>, Vec<&str>) = (
            a.iter().map(String::as_str).collect(),
            b.iter().map(String::as_str).collect(),
        );
        let h = hunks(&a, &b);
        assert_eq!(h.len(), 1);
        assert_eq!(apply(&a, &b, &h), b);
    }

    #[test]
    fn a_unified_diff_shows_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let new = "1\n2\n3\n4\n5\n6\n7\n8\nnine\n10\n";
        assert_eq!(
            unified("f.nn", old, new),
            "--- f.nn\n+++ f.nn (formatted)\n@@ -6,5 +6,5 @@\n 6\n 7\n 8\n-9\n+nine\n 10\n"
        );
        assert_eq!(unified("f.nn", old, old), "");
    }
}
