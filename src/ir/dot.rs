//! Graphviz output (`nnc compile --target dot`): ops as boxes labelled with
//! their result shape, layers and blocks as nested clusters (`layer1` holds
//! `layer1.0`, which holds `layer1.0.conv1`). Parameters, buffers and
//! constants are left out so that ResNet-50 stays readable.

use super::{Graph, Op};
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Default)]
struct Cluster {
    nodes: Vec<usize>,
    children: BTreeMap<String, Cluster>,
}

fn hidden(op: &Op) -> bool {
    matches!(op, Op::Input { role, .. } if *role != super::Role::Data && *role != super::Role::Target)
        || matches!(op, Op::Const { .. })
}

pub fn print(g: &Graph) -> String {
    let mut root = Cluster::default();
    for (i, n) in g.nodes.iter().enumerate() {
        if hidden(&n.op) {
            continue;
        }
        let mut c = &mut root;
        if !n.scope.is_empty() {
            let mut path = String::new();
            for part in n.scope.split('.') {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(part);
                c = c.children.entry(path.clone()).or_default();
            }
        }
        c.nodes.push(i);
    }
    let mut out = String::new();
    let _ = writeln!(out, "digraph {:?} {{", g.name);
    out.push_str("  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f4f4f4\", fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [color=\"#555555\", arrowsize=0.6];\n");
    let mut counter = 0;
    write_cluster(g, &root, "", 1, &mut counter, &mut out);
    for (i, n) in g.nodes.iter().enumerate() {
        if hidden(&n.op) {
            continue;
        }
        for a in &n.args {
            if !hidden(&g.node(*a).op) {
                let _ = writeln!(out, "  n{} -> n{i};", a.0);
            }
        }
    }
    for (name, id) in &g.outputs {
        let _ = writeln!(
            out,
            "  out_{} [label={:?}, shape=oval, fillcolor=\"#d8ecd8\"];",
            sanitize(name),
            name
        );
        let _ = writeln!(out, "  n{} -> out_{};", id.0, sanitize(name));
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
    c: &Cluster,
    label: &str,
    depth: usize,
    counter: &mut usize,
    out: &mut String,
) {
    let indent = "  ".repeat(depth);
    for &i in &c.nodes {
        let n = &g.nodes[i];
        let dims: Vec<String> = n.ty.shape.iter().map(|d| d.to_string()).collect();
        let text = match &n.op {
            Op::Input { name, .. } => format!("{name}\\n{}", dims.join("x")),
            op => format!("{}\\n{}", op.name(), dims.join("x")),
        };
        let color = match &n.op {
            Op::Input { .. } => "#d8e4f4",
            Op::Conv2d(_) | Op::MatMul { .. } => "#f9dcc4",
            _ => "#f4f4f4",
        };
        let _ = writeln!(
            out,
            "{indent}n{i} [label=\"{text}\", fillcolor=\"{color}\"];"
        );
    }
    for (path, child) in &c.children {
        *counter += 1;
        let short = path
            .strip_prefix(label)
            .map(|s| s.trim_start_matches('.'))
            .unwrap_or(path);
        let _ = writeln!(out, "{indent}subgraph cluster_{} {{", *counter);
        let _ = writeln!(
            out,
            "{indent}  label={short:?}; style=rounded; color=\"#999999\"; fontname=\"Helvetica\";"
        );
        write_cluster(g, child, path, depth + 1, counter, out);
        let _ = writeln!(out, "{indent}}}");
    }
}
