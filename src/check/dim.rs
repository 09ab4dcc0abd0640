//! Symbolic dimensions.
//!
//! A [`Dim`] is a polynomial with integer coefficients over symbols such as
//! the batch size `N`. Sums, differences and products stay polynomials and
//! simplify (`N + N` is `2*N`, `C*H*W` with known `C, H, W` is a number).
//! Floor division and remainder by a constant become opaque atoms unless they
//! divide exactly, so `(2*N) / 2` is `N` but `(H + 1) / 2` stays as written.
//! Two dims are equal exactly when their normal forms are equal.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    Named(Arc<str>),
    /// `floor(d / k)` with `k > 1`.
    Div(Box<Dim>, i64),
    /// `d mod k` with `k > 1`.
    Rem(Box<Dim>, i64),
}

/// A product of atoms, sorted; the empty monomial is the constant term.
type Monomial = Vec<Atom>;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dim {
    terms: BTreeMap<Monomial, i64>,
}

impl Dim {
    pub fn constant(v: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if v != 0 {
            terms.insert(Vec::new(), v);
        }
        Dim { terms }
    }

    pub fn symbol(name: &str) -> Dim {
        Dim::atom(Atom::Named(Arc::from(name)))
    }

    fn atom(a: Atom) -> Dim {
        let mut terms = BTreeMap::new();
        terms.insert(vec![a], 1);
        Dim { terms }
    }

    /// The value, when the dim does not depend on any symbol.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    pub fn is_const(&self) -> bool {
        self.as_const().is_some()
    }

    pub fn checked_add(&self, other: &Dim) -> Option<Dim> {
        let mut terms = self.terms.clone();
        for (m, c) in &other.terms {
            let e = terms.entry(m.clone()).or_insert(0);
            *e = e.checked_add(*c)?;
            if *e == 0 {
                terms.remove(m);
            }
        }
        Some(Dim { terms })
    }

    pub fn checked_neg(&self) -> Option<Dim> {
        let mut terms = BTreeMap::new();
        for (m, c) in &self.terms {
            terms.insert(m.clone(), c.checked_neg()?);
        }
        Some(Dim { terms })
    }

    pub fn checked_sub(&self, other: &Dim) -> Option<Dim> {
        self.checked_add(&other.checked_neg()?)
    }

    pub fn checked_mul(&self, other: &Dim) -> Option<Dim> {
        let mut out = Dim::default();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &other.terms {
                let mut m: Monomial = m1.iter().chain(m2.iter()).cloned().collect();
                m.sort();
                let term = Dim {
                    terms: BTreeMap::from([(m, c1.checked_mul(*c2)?)]),
                };
                out = out.checked_add(&term)?;
            }
        }
        Some(out)
    }

    /// Floor division by a positive constant. `None` on overflow.
    pub fn floor_div(&self, k: i64) -> Option<Dim> {
        debug_assert!(k > 0);
        if k == 1 {
            return Some(self.clone());
        }
        if let Some(v) = self.as_const() {
            return Some(Dim::constant(v.div_euclid(k)));
        }
        if self.terms.values().all(|c| c % k == 0) {
            let terms = self.terms.iter().map(|(m, c)| (m.clone(), c / k)).collect();
            return Some(Dim { terms });
        }
        Some(Dim::atom(Atom::Div(Box::new(self.clone()), k)))
    }

    /// Remainder by a positive constant.
    pub fn rem(&self, k: i64) -> Option<Dim> {
        debug_assert!(k > 0);
        if let Some(v) = self.as_const() {
            return Some(Dim::constant(v.rem_euclid(k)));
        }
        if self.terms.values().all(|c| c % k == 0) {
            return Some(Dim::constant(0));
        }
        Some(Dim::atom(Atom::Rem(Box::new(self.clone()), k)))
    }

    /// `ceil(self / k)`, as `floor((self + k - 1) / k)`.
    pub fn ceil_div(&self, k: i64) -> Option<Dim> {
        self.checked_add(&Dim::constant(k - 1))?.floor_div(k)
    }

    /// Replaces named symbols by values; `None` on overflow.
    pub fn substitute(&self, values: &dyn Fn(&str) -> Option<i64>) -> Option<Dim> {
        let mut out = Dim::default();
        for (m, c) in &self.terms {
            let mut term = Dim::constant(*c);
            for a in m {
                let factor = match a {
                    Atom::Named(n) => match values(n) {
                        Some(v) => Dim::constant(v),
                        None => Dim::atom(a.clone()),
                    },
                    Atom::Div(d, k) => d.substitute(values)?.floor_div(*k)?,
                    Atom::Rem(d, k) => d.substitute(values)?.rem(*k)?,
                };
                term = term.checked_mul(&factor)?;
            }
            out = out.checked_add(&term)?;
        }
        Some(out)
    }

    /// The named symbols the dim mentions.
    pub fn symbols(&self, out: &mut Vec<Arc<str>>) {
        for m in self.terms.keys() {
            for a in m {
                match a {
                    Atom::Named(n) => {
                        if !out.contains(n) {
                            out.push(n.clone());
                        }
                    }
                    Atom::Div(d, _) | Atom::Rem(d, _) => d.symbols(out),
                }
            }
        }
    }

    /// True when the dim is a single symbol with coefficient one (`N`).
    pub fn as_symbol(&self) -> Option<&str> {
        let (m, c) = self.terms.iter().next()?;
        match (self.terms.len(), c, m.as_slice()) {
            (1, 1, [Atom::Named(n)]) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Named(n) => f.write_str(n),
            Atom::Div(d, k) => write!(f, "{}/{k}", Paren(d)),
            Atom::Rem(d, k) => write!(f, "{}%{k}", Paren(d)),
        }
    }
}

/// Writes a dim in parentheses unless it is a single atom or number.
struct Paren<'a>(&'a Dim);

impl fmt::Display for Paren<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let simple = self.0.terms.len() <= 1
            && self
                .0
                .terms
                .iter()
                .all(|(m, c)| m.len() <= 1 && (*c == 1 || m.is_empty()));
        if simple {
            write!(f, "{}", self.0)
        } else {
            write!(f, "({})", self.0)
        }
    }
}

impl fmt::Display for Dim {
    /// Highest degree first, constant last: `2*N*H + N - 3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let mut terms: Vec<(&Monomial, &i64)> = self.terms.iter().collect();
        terms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        for (i, (m, c)) in terms.into_iter().enumerate() {
            let (sign, mag) = if *c < 0 {
                ("-", c.unsigned_abs())
            } else {
                ("+", *c as u64)
            };
            if i == 0 {
                if sign == "-" {
                    f.write_str("-")?;
                }
            } else {
                write!(f, " {sign} ")?;
            }
            if m.is_empty() {
                write!(f, "{mag}")?;
                continue;
            }
            if mag != 1 {
                write!(f, "{mag}*")?;
            }
            for (j, a) in m.iter().enumerate() {
                if j > 0 {
                    f.write_str("*")?;
                }
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

/// Formats a shape as `[N, 64, 56, 56]`.
pub fn shape_to_string(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomials_simplify() {
        let n = Dim::symbol("N");
        let two_n = n.checked_add(&n).unwrap();
        assert_eq!(two_n.to_string(), "2*N");
        assert_eq!(two_n.floor_div(2).unwrap(), n);
        let c = Dim::constant(64).checked_mul(&Dim::constant(7)).unwrap();
        assert_eq!(c.as_const(), Some(448));
        let h = Dim::symbol("H");
        let e = h
            .checked_add(&Dim::constant(1))
            .unwrap()
            .floor_div(2)
            .unwrap();
        assert_eq!(e.to_string(), "(H + 1)/2");
        let bound = e.substitute(&|s| (s == "H").then_some(8)).unwrap();
        assert_eq!(bound.as_const(), Some(4));
        assert_eq!(Dim::constant(-7).floor_div(2).unwrap().as_const(), Some(-4));
        assert!(Dim::constant(i64::MAX)
            .checked_add(&Dim::constant(1))
            .is_none());
        assert_eq!(n.checked_sub(&n).unwrap().as_const(), Some(0));
        assert_eq!(
            n.checked_mul(&h)
                .unwrap()
                .checked_add(&Dim::constant(-3))
                .unwrap()
                .to_string(),
            "H*N - 3"
        );
    }
}
