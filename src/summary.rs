//! `nnc summary`: per-layer shapes, parameters and multiply-accumulates.

use crate::check::dim::{shape_to_string, Dim};
use crate::check::model::{Model, TensorKind};
use serde_json::json;

pub struct LayerRow {
    pub path: String,
    pub op: &'static str,
    pub output_shape: Vec<Dim>,
    pub params: u128,
    pub macs: Option<Dim>,
}

pub struct Summary {
    pub network: String,
    pub input_shape: Vec<Dim>,
    pub rows: Vec<LayerRow>,
    pub total_params: u128,
    pub trainable_params: u128,
    pub macs: Option<Dim>,
    /// Bytes of every layer output in f32: what a forward pass keeps for the
    /// backward pass.
    pub activation_bytes: Option<Dim>,
    pub parameter_bytes: u128,
}

/// Summarises a model; parameters matching a `freeze` pattern are not
/// trainable.
pub fn summarize(model: &Model, freeze: &[String]) -> Summary {
    let mut rows = Vec::new();
    let mut macs = Some(Dim::constant(0));
    let mut activations = Some(Dim::constant(0));
    for layer in &model.layers {
        let shape = model.shape(layer.output).to_vec();
        let layer_macs = layer.op.macs(&shape);
        macs = macs
            .zip(layer_macs.as_ref())
            .and_then(|(a, b)| a.checked_add(b));
        let numel = shape
            .iter()
            .try_fold(Dim::constant(1), |acc, d| acc.checked_mul(d));
        activations = activations
            .zip(numel)
            .and_then(|(a, n)| a.checked_add(&n.checked_mul(&Dim::constant(4))?));
        rows.push(LayerRow {
            path: layer.path.clone(),
            op: layer.op.name(),
            output_shape: shape,
            params: layer
                .params
                .iter()
                .filter(|p| p.kind == TensorKind::Parameter)
                .map(|p| p.numel())
                .sum(),
            macs: layer_macs,
        });
    }
    let params: Vec<_> = model
        .tensors()
        .filter(|p| p.kind == TensorKind::Parameter)
        .collect();
    let total_params: u128 = params.iter().map(|p| p.numel()).sum();
    let trainable_params = params
        .iter()
        .filter(|p| !freeze.iter().any(|f| crate::glob::matches(f, &p.name)))
        .map(|p| p.numel())
        .sum();
    Summary {
        network: model.name.clone(),
        input_shape: model
            .inputs
            .first()
            .map(|i| model.shape(i.value).to_vec())
            .unwrap_or_default(),
        rows,
        total_params,
        trainable_params,
        macs,
        activation_bytes: activations,
        parameter_bytes: model.tensors().map(|p| p.numel() * 4).sum(),
    }
}

/// `1234567` as `1,234,567`.
pub fn group_digits(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn dim_number(d: &Option<Dim>) -> String {
    match d.as_ref().map(|d| (d.as_const(), d)) {
        Some((Some(v), _)) if v >= 0 => group_digits(v as u128),
        Some((_, d)) => d.to_string(),
        None => "overflow".to_string(),
    }
}

fn si(v: f64) -> String {
    let units = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, unit) in units {
        if v >= scale {
            return format!("{:.2} {unit}", v / scale);
        }
    }
    format!("{v}")
}

/// `v` bytes in the largest binary unit that keeps it at least 1.
pub(crate) fn bytes(v: f64) -> String {
    let units = [
        (1024.0 * 1024.0 * 1024.0, "GiB"),
        (1024.0 * 1024.0, "MiB"),
        (1024.0, "KiB"),
    ];
    for (scale, unit) in units {
        if v >= scale {
            return format!("{:.2} {unit}", v / scale);
        }
    }
    format!("{v} B")
}

pub fn to_text(s: &Summary) -> String {
    let headers = ["layer", "op", "output shape", "params", "MACs"];
    let mut cells: Vec<[String; 5]> = s
        .rows
        .iter()
        .map(|r| {
            [
                r.path.clone(),
                r.op.to_string(),
                shape_to_string(&r.output_shape),
                if r.params == 0 {
                    "-".into()
                } else {
                    group_digits(r.params)
                },
                match &r.macs {
                    Some(m) if m.as_const() == Some(0) => "-".into(),
                    m => dim_number(m),
                },
            ]
        })
        .collect();
    cells.insert(0, headers.map(String::from));
    let mut widths = [0usize; 5];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    out.push_str(&format!(
        "network {}   input {}\n\n",
        s.network,
        shape_to_string(&s.input_shape)
    ));
    for (i, row) in cells.iter().enumerate() {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        );
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 8));
            out.push('\n');
        }
    }
    out.push('\n');
    let macs_f = s.macs.as_ref().and_then(Dim::as_const).map(|m| m as f64);
    let act_f = s
        .activation_bytes
        .as_ref()
        .and_then(Dim::as_const)
        .map(|m| m as f64);
    out.push_str(&format!(
        "total params       {}\n",
        group_digits(s.total_params)
    ));
    out.push_str(&format!(
        "trainable params   {}\n",
        group_digits(s.trainable_params)
    ));
    out.push_str(&format!(
        "MACs               {}{}\n",
        dim_number(&s.macs),
        macs_f.map_or(String::new(), |m| format!(" ({})", si(m)))
    ));
    out.push_str(&format!(
        "activation memory  {} (f32 layer outputs, forward)\n",
        act_f.map_or_else(|| dim_number(&s.activation_bytes), bytes)
    ));
    out.push_str(&format!(
        "parameter memory   {} (f32, with buffers)\n",
        bytes(s.parameter_bytes as f64)
    ));
    out
}

fn dim_json(d: &Dim) -> serde_json::Value {
    match d.as_const() {
        Some(v) => json!(v),
        None => json!(d.to_string()),
    }
}

fn opt_dim_json(d: &Option<Dim>) -> serde_json::Value {
    d.as_ref().map_or(serde_json::Value::Null, dim_json)
}

fn count_json(n: u128) -> serde_json::Value {
    match u64::try_from(n) {
        Ok(v) => json!(v),
        Err(_) => json!(n.to_string()),
    }
}

pub fn to_json(s: &Summary) -> serde_json::Value {
    json!({
        "network": s.network,
        "input_shape": s.input_shape.iter().map(dim_json).collect::<Vec<_>>(),
        "total_params": count_json(s.total_params),
        "trainable_params": count_json(s.trainable_params),
        "macs": opt_dim_json(&s.macs),
        "activation_bytes": opt_dim_json(&s.activation_bytes),
        "parameter_bytes": count_json(s.parameter_bytes),
        "layers": s.rows.iter().map(|r| json!({
            "path": r.path,
            "op": r.op,
            "output_shape": r.output_shape.iter().map(dim_json).collect::<Vec<_>>(),
            "params": count_json(r.params),
            "macs": opt_dim_json(&r.macs),
        })).collect::<Vec<_>>(),
    })
}
