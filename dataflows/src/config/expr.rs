//! The arithmetic of `kind = "expression"` derived signals: parsed and checked
//! once at start-up, evaluated per row without allocating.
//!
//! The language: numbers (`2`, `0.5`, `.5`; no exponent notation), operand
//! names (`[A-Za-z_][A-Za-z0-9_]*`), `+ - * / ^`, parentheses, unary minus, and
//! the functions [`FUNCTIONS`] (`min` and `max` take two arguments, the others
//! one). A row where an operand is NaN (missing) gives NaN, and so does a
//! non-finite result (a division by zero, `ln(0)`, `sqrt(-1)`).
//!
//! Parsing and evaluation are `exmex`'s (MIT/Apache-2.0, maintained): it
//! compiles an expression once into a flat list of nodes and operators and
//! evaluates it on a slice of operand values bound by position, on the stack
//! for expressions of up to 32 numbers and operands. `evalexpr` is AGPL-3.0
//! since version 12 and evaluates through a name-keyed context of dynamic
//! values; `fasteval` and `meval` have had no release since 2020 and 2017.
//!
//! exmex departs from the usual precedence in two places: unary minus binds
//! tighter than `^` (`-x^2` is `(-x)^2`) and `^` chains left to right
//! (`x^y^z` is `(x^y)^z`). Rather than let a config mean something else than
//! it reads, [`Expression::parse`] refuses both forms and asks for the
//! parentheses; every other form means what it does in the usual notation (and
//! in Python with `^` read as `**`).

use exmex::prelude::*;
use exmex::{BinOp, MakeOperators, Operator};

/// The functions an expression may call.
pub const FUNCTIONS: [&str; 7] = ["abs", "sqrt", "ln", "exp", "log10", "min", "max"];

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// Nothing to evaluate.
    #[error("the expression is empty")]
    Empty,
    /// A character outside the language.
    #[error("unexpected `{ch}` at offset {at}")]
    UnexpectedChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A number run into letters (`1e3`, `5kW`).
    #[error("`{0}` is not a number: write plain decimals (1000, not 1e3)")]
    BadNumber(String),
    /// A name followed by `(` that is no known function.
    #[error("unknown function `{0}` (functions: {list})", list = FUNCTIONS.join(", "))]
    UnknownFunction(String),
    /// A function name used without its parentheses.
    #[error("`{0}` is a function: write `{0}(...)`")]
    FunctionWithoutParens(String),
    /// `(` and `)` do not pair up.
    #[error("unbalanced parentheses")]
    Parens,
    /// `-x^y`, which the evaluator would read as `(-x)^y`.
    #[error("`-x^y` is ambiguous: write `-(x^y)` or `(-x)^y`")]
    NegatedPower,
    /// `x^y^z`, which the evaluator would read as `(x^y)^z`.
    #[error("`x^y^z` is ambiguous: write `(x^y)^z` or `x^(y^z)`")]
    ChainedPower,
    /// What the parser refused otherwise.
    #[error("syntax error: {0}")]
    Syntax(String),
}

/// The operators exmex knows here: arithmetic and [`FUNCTIONS`], and no named
/// constants (`e` or `PI` would otherwise shadow a signal of that name). The
/// priorities are exmex's defaults.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ops;

impl MakeOperators<f64> for Ops {
    fn make<'a>() -> Vec<Operator<'a, f64>> {
        let bin = |apply: fn(f64, f64) -> f64, prio: i64, is_commutative: bool| BinOp {
            apply,
            prio,
            is_commutative,
        };
        vec![
            Operator::make_bin("^", bin(f64::powf, 4, false)),
            Operator::make_bin("/", bin(|a, b| a / b, 3, false)),
            Operator::make_bin("*", bin(|a, b| a * b, 2, true)),
            Operator::make_bin_unary("-", bin(|a, b| a - b, 1, false), |a| -a),
            Operator::make_bin_unary("+", bin(|a, b| a + b, 0, true), |a| a),
            Operator::make_bin("min", bin(f64::min, 0, false)),
            Operator::make_bin("max", bin(f64::max, 0, false)),
            Operator::make_unary("abs", f64::abs),
            Operator::make_unary("sqrt", f64::sqrt),
            Operator::make_unary("ln", f64::ln),
            Operator::make_unary("exp", f64::exp),
            Operator::make_unary("log10", f64::log10),
        ]
    }
}

/// A parsed expression; cheap to evaluate per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    flat: FlatEx<f64, Ops>,
    operands: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Num,
    Name(&'a str),
    Op(u8),
    Open,
    Close,
    Comma,
}

fn lex(src: &str) -> Result<Vec<Tok<'_>>, ExprError> {
    let b = src.as_bytes();
    let word = |from: usize| {
        from + b[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'.')
            .count()
    };
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'0'..=b'9' | b'.' => {
                let end = i + b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || **c == b'.')
                    .count();
                if word(end) > end {
                    return Err(ExprError::BadNumber(src[i..word(end)].to_string()));
                }
                toks.push(Tok::Num);
                i = end;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let end = i + b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                toks.push(Tok::Name(&src[i..end]));
                i = end;
            }
            b'+' | b'-' | b'*' | b'/' | b'^' => {
                toks.push(Tok::Op(c));
                i += 1;
            }
            b'(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            b')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ExprError::UnexpectedChar { ch, at: i });
            }
        }
    }
    Ok(toks)
}

/// The index of the `)` closing the `(` at `open`.
fn closing(toks: &[Tok<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The index after the operand starting at `i` (signs, then a number, a name, a
/// call or a parenthesised group); `None` when there is none (the parser then
/// reports the error).
fn operand_end(toks: &[Tok<'_>], mut i: usize) -> Option<usize> {
    while let Some(Tok::Op(b'+' | b'-')) = toks.get(i) {
        i += 1;
    }
    match toks.get(i)? {
        Tok::Num => Some(i + 1),
        Tok::Name(_) if toks.get(i + 1) == Some(&Tok::Open) => Some(closing(toks, i + 1)? + 1),
        Tok::Name(_) => Some(i + 1),
        Tok::Open => Some(closing(toks, i)? + 1),
        _ => None,
    }
}

/// The checks exmex does not make, or makes with a message that names no cause.
fn check_tokens(toks: &[Tok<'_>]) -> Result<(), ExprError> {
    if toks.is_empty() {
        return Err(ExprError::Empty);
    }
    let mut depth = 0i64;
    for t in toks {
        match t {
            Tok::Open => depth += 1,
            Tok::Close if depth == 0 => return Err(ExprError::Parens),
            Tok::Close => depth -= 1,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ExprError::Parens);
    }
    for (k, t) in toks.iter().enumerate() {
        let next = toks.get(k + 1);
        match *t {
            Tok::Name(n) if FUNCTIONS.contains(&n) && next != Some(&Tok::Open) => {
                return Err(ExprError::FunctionWithoutParens(n.to_string()));
            }
            Tok::Name(n) if !FUNCTIONS.contains(&n) && next == Some(&Tok::Open) => {
                return Err(ExprError::UnknownFunction(n.to_string()));
            }
            Tok::Op(op @ (b'-' | b'^')) => {
                // The operand after this operator, and what follows it.
                let after = operand_end(toks, k + 1).and_then(|e| toks.get(e));
                if after != Some(&Tok::Op(b'^')) {
                    continue;
                }
                if op == b'^' {
                    return Err(ExprError::ChainedPower);
                }
                let unary = k == 0 || matches!(toks[k - 1], Tok::Op(_) | Tok::Open | Tok::Comma);
                if unary {
                    return Err(ExprError::NegatedPower);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Expression {
    /// Parse `src`, refusing what is outside the language or reads ambiguously.
    pub fn parse(src: &str) -> Result<Expression, ExprError> {
        check_tokens(&lex(src)?)?;
        let flat =
            FlatEx::<f64, Ops>::parse(src).map_err(|e| ExprError::Syntax(e.msg().to_string()))?;
        let operands = flat.var_names().iter().map(|s| s.to_string()).collect();
        Ok(Expression { flat, operands })
    }

    /// The names the expression reads, each once, in the order
    /// [`eval`](Self::eval) takes their values.
    pub fn operands(&self) -> &[String] {
        &self.operands
    }

    /// The value for `values` (one per operand, in [`operands`](Self::operands)
    /// order): NaN when any is NaN or the result is not finite.
    #[inline]
    pub fn eval(&self, values: &[f64]) -> f64 {
        if values.iter().any(|v| v.is_nan()) {
            return f64::NAN;
        }
        match self.flat.eval(values) {
            Ok(v) if v.is_finite() => v,
            _ => f64::NAN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, vals: &[(&str, f64)]) -> f64 {
        let e = Expression::parse(src).unwrap();
        let args: Vec<f64> = e
            .operands()
            .iter()
            .map(|n| vals.iter().find(|(k, _)| k == n).unwrap().1)
            .collect();
        e.eval(&args)
    }

    #[test]
    fn usual_precedence_and_functions() {
        let v = [("a", 3.0), ("b", 2.0), ("c", 4.0)];
        assert_eq!(eval("a - b - c", &v), -3.0);
        assert_eq!(eval("a / b / c", &v), 0.375);
        assert_eq!(eval("a - b * c + 1", &v), -4.0);
        assert_eq!(eval("c / b^2", &v), 1.0);
        assert_eq!(eval("2 * -b", &v), -4.0);
        assert_eq!(eval("-b * c", &v), -8.0);
        assert_eq!(eval("-(b^2)", &v), -4.0);
        assert_eq!(eval("(-b)^2", &v), 4.0);
        assert_eq!(eval("b^-1", &v), 0.5);
        assert_eq!(eval("(b^a)^2", &v), 64.0);
        assert_eq!(eval("b^(a^2)", &v), 512.0);
        assert_eq!(eval("sqrt(c)^2 + abs(-a)", &v), 7.0);
        assert_eq!(eval("min(a, b) * max(a, c - 2)", &v), 6.0);
        assert_eq!(eval("ln(exp(b)) + log10(100)", &v), 4.0);
        assert_eq!(eval(".5 * c + 0.25", &v), 2.25);
        let e = Expression::parse("speed^2 + head / speed + flow").unwrap();
        assert_eq!(e.operands(), ["flow", "head", "speed"], "sorted, once each");
    }

    #[test]
    fn missing_and_non_finite_give_nan() {
        assert!(eval("a + b", &[("a", f64::NAN), ("b", 1.0)]).is_nan());
        assert!(eval("0 * a", &[("a", f64::NAN)]).is_nan());
        assert!(eval("a^0", &[("a", f64::NAN)]).is_nan(), "NaN^0 would be 1");
        assert!(eval("min(a, b)", &[("a", f64::NAN), ("b", 1.0)]).is_nan());
        assert!(eval("a / b", &[("a", 1.0), ("b", 0.0)]).is_nan());
        assert!(eval("a / b", &[("a", 0.0), ("b", 0.0)]).is_nan());
        assert!(eval("ln(a)", &[("a", 0.0)]).is_nan());
        assert!(eval("sqrt(a)", &[("a", -1.0)]).is_nan());
        assert!(eval("exp(a)", &[("a", 1000.0)]).is_nan());
    }

    #[test]
    fn refusals_say_why() {
        let err = |s: &str| Expression::parse(s).unwrap_err();
        assert_eq!(err(""), ExprError::Empty);
        assert_eq!(err("  "), ExprError::Empty);
        assert_eq!(err("a % b"), ExprError::UnexpectedChar { ch: '%', at: 2 });
        assert_eq!(err("a * π"), ExprError::UnexpectedChar { ch: 'π', at: 4 });
        assert_eq!(err("{a}"), ExprError::UnexpectedChar { ch: '{', at: 0 });
        assert_eq!(err("1e3 * a"), ExprError::BadNumber("1e3".into()));
        assert_eq!(err("a / 5kW"), ExprError::BadNumber("5kW".into()));
        assert_eq!(err("sin(a)"), ExprError::UnknownFunction("sin".into()));
        assert_eq!(
            err("sqrt a"),
            ExprError::FunctionWithoutParens("sqrt".into())
        );
        assert_eq!(err("(a + b"), ExprError::Parens);
        assert_eq!(err("a + b)"), ExprError::Parens);
        assert_eq!(err(")a("), ExprError::Parens);
        assert_eq!(err("-a^2"), ExprError::NegatedPower);
        assert_eq!(err("b * -a^2"), ExprError::NegatedPower);
        assert_eq!(err("-sqrt(a)^2"), ExprError::NegatedPower);
        assert_eq!(err("-(a + b)^2"), ExprError::NegatedPower);
        assert_eq!(err("a^b^2"), ExprError::ChainedPower);
        assert_eq!(err("a^-b^2"), ExprError::ChainedPower);
        assert_eq!(err("a^(b)^2"), ExprError::ChainedPower);
        for s in [
            "a +",
            "a b",
            "min(a)",
            "min(a, b, c)",
            "abs(a, b)",
            "(a, b)",
            "1.2.3",
        ] {
            assert!(matches!(err(s), ExprError::Syntax(_)), "{s}: {:?}", err(s));
        }
    }
}
