//! `.npy` arrays: little-endian f32, C or Fortran order; anything else is
//! rejected with a message that says what the file holds.

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

struct Header<'a> {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
    count: usize,
    data: &'a [u8],
}

fn header(bytes: &[u8]) -> Result<Header<'_>, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(format!("unsupported .npy version {major}")),
    };
    let text = bytes
        .get(start..start + header_len)
        .ok_or("truncated .npy header")?;
    let text = std::str::from_utf8(text).map_err(|_| "the .npy header is not text")?;
    let descr = dict_value(text, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    let fortran = dict_value(text, "fortran_order")
        .ok_or("the .npy header has no 'fortran_order'")?
        .trim()
        == "True";
    let shape_text = dict_value(text, "shape").ok_or("the .npy header has no 'shape'")?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad .npy shape {shape_text}"))
        })
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("the .npy shape overflows")?;
    Ok(Header {
        descr,
        fortran,
        shape,
        count,
        data: &bytes[start + header_len..],
    })
}

fn dtype_name(descr: &str) -> &str {
    match descr {
        "<f8" => "float64",
        "<f2" => "float16",
        "<i8" => "int64",
        "<i4" => "int32",
        "|u1" => "uint8",
        "|b1" => "bool",
        other => other,
    }
}

/// Parses `.npy` bytes into an f32 array.
pub fn parse(bytes: &[u8]) -> Result<ArrayD<f32>, String> {
    let h = header(bytes)?;
    if h.descr != "<f4" {
        return Err(format!(
            "the array is {}; nnc reads float32 (in NumPy: `np.save(path, a.astype(np.float32))`)",
            dtype_name(&h.descr)
        ));
    }
    let needed = h.count.checked_mul(4).ok_or("the .npy shape overflows")?;
    if h.data.len() < needed {
        return Err(format!(
            "truncated .npy data: {} bytes for {} float32 values",
            h.data.len(),
            h.count
        ));
    }
    let values: Vec<f32> = h.data[..needed]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let dim = IxDyn(&h.shape);
    let array = if h.fortran {
        ArrayD::from_shape_vec(dim.f(), values)
    } else {
        ArrayD::from_shape_vec(dim, values)
    };
    array.map_err(|e| e.to_string())
}

/// Class labels from a 1-d `.npy` of integers (or of whole float32s).
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u32>, String> {
    let h = header(bytes)?;
    if h.shape.len() != 1 {
        return Err(format!(
            "labels must be 1-d, but the shape is {:?}",
            h.shape
        ));
    }
    let width = match h.descr.as_str() {
        "|u1" | "|i1" => 1,
        "<i2" | "<u2" => 2,
        "<i4" | "<u4" | "<f4" => 4,
        "<i8" | "<u8" => 8,
        other => {
            return Err(format!(
                "labels of type {} are not supported; use integers",
                dtype_name(other)
            ))
        }
    };
    let needed = h
        .count
        .checked_mul(width)
        .ok_or("the .npy shape overflows")?;
    if h.data.len() < needed {
        return Err(format!(
            "truncated .npy data: {} bytes for {} labels",
            h.data.len(),
            h.count
        ));
    }
    h.data[..needed]
        .chunks_exact(width)
        .map(|c| {
            let v: i128 = match (h.descr.as_str(), width) {
                ("<f4", _) => {
                    let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    if f.fract() != 0.0 {
                        return Err(format!("label {f} is not a whole number"));
                    }
                    f as i128
                }
                (d, 1) if d.starts_with("|i") => i128::from(c[0] as i8),
                (_, 1) => i128::from(c[0]),
                (d, 2) if d.starts_with("<i") => i128::from(i16::from_le_bytes([c[0], c[1]])),
                (_, 2) => i128::from(u16::from_le_bytes([c[0], c[1]])),
                (d, 4) if d.starts_with("<i") => {
                    i128::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                }
                (_, 4) => i128::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                (d, _) if d.starts_with("<i") => {
                    i128::from(i64::from_le_bytes(c.try_into().expect("8 bytes")))
                }
                _ => i128::from(u64::from_le_bytes(c.try_into().expect("8 bytes"))),
            };
            u32::try_from(v).map_err(|_| format!("label {v} is not a class index"))
        })
        .collect()
}

pub fn read_labels(path: &Path) -> Result<Vec<u32>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    parse_labels(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// The text of `'key': value` in a .npy header dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

pub fn read(path: &Path) -> Result<ArrayD<f32>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// `.npy` version 1.0 bytes of an f32 array in C order.
pub fn to_bytes(a: &ArrayD<f32>) -> Vec<u8> {
    let shape: Vec<String> = a.shape().iter().map(|d| d.to_string()).collect();
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending in '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + a.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in a.as_standard_layout().iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn write(path: &Path, a: &ArrayD<f32>) -> Result<(), String> {
    super::atomic::write(path, &to_bytes(a))
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}
