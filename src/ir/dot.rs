//! Graphviz output (`nnc compile --target dot`).
//!
//! One box per layer (the consecutive nodes that lowering emitted for one
//! layer path), labelled with the layer's name, its main op and its output
//! shape; blocks and stages as nested clusters (`layer1` holds `layer1.0`).
//! Parameters, buffers, constants and what is computed from them alone
//! (batch norm's `rsqrt(var + eps)`) are left out, so ResNet-50 reads as
//! the network a person would draw.

use super::{Graph, Op, Output, Role};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A run of nodes of one layer.
struct Group {
    /// The layer path (`layer1.0.conv1`).
    path: String,
    /// The layer kind, when lowering recorded it.
    kind: Option<String>,
    nodes: Vec<usize>,
}

#[derive(Default)]
struct Cluster {
    groups: Vec<usize>,
    children: BTreeMap<String, Cluster>,
}

/// Nodes that do not depend on data: parameters and what is computed from
/// parameters only.
fn hidden_nodes(g: &Graph) -> Vec<bool> {
    let mut hidden = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        hidden[i] = match &n.op {
            Op::Input { role, .. } => !matches!(role, Role::Data | Role::Target),
            Op::Const { .. } => true,
            _ => n.args.iter().all(|a| hidden[a.0 as usize]),
        };
    }
    hidden
}

/// The op that names a layer: its heaviest one.
fn main_op(g: &Graph, nodes: &[usize]) -> &'static str {
    const RANK: [&str; 8] = [
        "conv2d",
        "matmul",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "adaptive_max_pool2d",
        "concat",
        "dropout",
    ];
    let names: Vec<&'static str> = nodes.iter().map(|&i| g.nodes[i].op.name()).collect();
    RANK.iter()
        .find(|r| names.contains(r))
        .copied()
        .unwrap_or_else(|| names.last().copied().unwrap_or("?"))
}

pub fn print(g: &Graph) -> String {
    let hidden = hidden_nodes(g);
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of = vec![usize::MAX; g.nodes.len()];
    let mut previous_scope: Option<&str> = None;
    for (i, n) in g.nodes.iter().enumerate() {
        let same = previous_scope == Some(n.scope.as_str()) && !n.scope.is_empty();
        previous_scope = Some(n.scope.as_str());
        if hidden[i] {
            continue;
        }
        let new_group = !same
            || groups
                .last()
                .is_none_or(|gr| gr.path != n.layer_path() || gr.kind.as_deref() != n.layer_kind());
        if new_group {
            groups.push(Group {
                path: n.layer_path().to_string(),
                kind: n.layer_kind().map(str::to_string),
                nodes: Vec::new(),
            });
        }
        let k = groups.len() - 1;
        groups[k].nodes.push(i);
        group_of[i] = k;
    }
    let mut root = Cluster::default();
    for (k, gr) in groups.iter().enumerate() {
        let mut c = &mut root;
        let parts: Vec<&str> = gr.path.split('.').filter(|p| !p.is_empty()).collect();
        let mut path = String::new();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
            c = c.children.entry(path.clone()).or_default();
        }
        c.groups.push(k);
    }
    let mut out = String::new();
    let _ = writeln!(out, "digraph {:?} {{", g.name);
    out.push_str("  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f4f4f4\", fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [color=\"#555555\", arrowsize=0.6];\n");
    let mut counter = 0;
    write_cluster(g, &groups, &root, "", 1, &mut counter, &mut out);
    let mut edges = BTreeSet::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if hidden[i] {
            continue;
        }
        for a in &n.args {
            let (from, to) = (group_of[a.0 as usize], group_of[i]);
            if from != usize::MAX && from != to {
                edges.insert((from, to));
            }
        }
    }
    for (from, to) in edges {
        let _ = writeln!(out, "  g{from} -> g{to};");
    }
    for (name, id) in &g.outputs {
        let k = group_of[id.0 as usize];
        if k != usize::MAX && !matches!(name, Output::Grad(_) | Output::Update(_)) {
            let _ = writeln!(
                out,
                "  out_{} [label={name:?}, shape=oval, fillcolor=\"#d8ecd8\"];",
                sanitize(&name.name())
            );
            let _ = writeln!(out, "  g{k} -> out_{};", sanitize(&name.name()));
        }
    }
    out.push_str("}\n");
    out
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn write_cluster(
    g: &Graph,
    groups: &[Group],
    c: &Cluster,
    prefix: &str,
    depth: usize,
    counter: &mut usize,
    out: &mut String,
) {
    let indent = "  ".repeat(depth);
    for &k in &c.groups {
        let gr = &groups[k];
        let last = *gr.nodes.last().expect("groups are not empty");
        let n = &g.nodes[last];
        let dims: Vec<String> = n.ty.shape.iter().map(|d| d.to_string()).collect();
        let (title, color) = match &n.op {
            Op::Input { name, .. } => (name.clone(), "#d8e4f4"),
            _ => {
                let op = gr.kind.as_deref().unwrap_or_else(|| main_op(g, &gr.nodes));
                let short = gr
                    .path
                    .rsplit('.')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(op);
                let color = if matches!(op, "conv2d" | "linear" | "matmul") {
                    "#f9dcc4"
                } else {
                    "#f4f4f4"
                };
                let title = if short == op {
                    op.to_string()
                } else {
                    format!("{short}: {op}")
                };
                (title, color)
            }
        };
        let _ = writeln!(
            out,
            "{indent}g{k} [label=\"{title}\\n{}\", fillcolor=\"{color}\"];",
            dims.join("x")
        );
    }
    for (path, child) in &c.children {
        *counter += 1;
        let short = path
            .strip_prefix(prefix)
            .map(|s| s.trim_start_matches('.'))
            .unwrap_or(path);
        let _ = writeln!(out, "{indent}subgraph cluster_{} {{", *counter);
        let _ = writeln!(
            out,
            "{indent}  label={short:?}; style=rounded; color=\"#999999\"; fontname=\"Helvetica\";"
        );
        write_cluster(g, groups, child, path, depth + 1, counter, out);
        let _ = writeln!(out, "{indent}}}");
    }
}
