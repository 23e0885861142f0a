//! CloudWatch metric math, the subset deploy/alarms.json and deploy/dashboard.json use, for the
//! local alarms and dashboard (the emulator has no metric math). Pure: no AWS calls.
//!
//! Supported: numbers, metric ids (`calls`, `errors`, …), `+ - * /`, unary minus, parentheses,
//! comparisons `== != > >= < <=` (1 or 0), `AND`/`&&`, `OR`/`||` (1 or 0; non-zero is true),
//! `IF(condition, a, b)` and `IF(condition, a)` (no datapoint when false), `FILL(x, value)`.
//!
//! CloudWatch evaluates an expression per timestamp of its time series: an operation on two
//! series has a datapoint only where both have one, and `FILL` gives one where its series has
//! none. Here an expression is evaluated for one period at a time ([`Expr::eval`]), each id
//! looked up for that period (`None`: no datapoint), with the same rules. A division by zero,
//! or anything else not finite, is no datapoint.

use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Id(String),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
    Fill(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MathError(pub String);

impl fmt::Display for MathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MathError {}

fn error<T>(message: impl Into<String>) -> Result<T, MathError> {
    Err(MathError(message.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Word(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

fn tokens(text: &str) -> Result<Vec<Token>, MathError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '0'..='9' | '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                // An exponent: 1e6, 2.5E-3.
                if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                    let mut j = i + 1;
                    if j < chars.len() && matches!(chars[j], '+' | '-') {
                        j += 1;
                    }
                    if j < chars.len() && chars[j].is_ascii_digit() {
                        i = j;
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
                let literal: String = chars[start..i].iter().collect();
                match literal.parse() {
                    Ok(number) => out.push(Token::Number(number)),
                    Err(_) => return error(format!("not a number: {literal}")),
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
            _ => {
                let two: String = [Some(c), next].iter().flatten().collect();
                let op = match two.as_str() {
                    "==" => Some("=="),
                    "!=" => Some("!="),
                    ">=" => Some(">="),
                    "<=" => Some("<="),
                    "&&" => Some("AND"),
                    "||" => Some("OR"),
                    _ => None,
                };
                if let Some(op) = op {
                    out.push(Token::Op(op));
                    i += 2;
                    continue;
                }
                let op = match c {
                    '+' => "+",
                    '-' => "-",
                    '*' => "*",
                    '/' => "/",
                    '>' => ">",
                    '<' => "<",
                    _ => return error(format!("unexpected character {c:?}")),
                };
                out.push(Token::Op(op));
                i += 1;
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, wanted: &Token, what: &str) -> Result<(), MathError> {
        match self.next() {
            Some(token) if &token == wanted => Ok(()),
            other => error(format!("expected {what}, found {other:?}")),
        }
    }

    /// The operator ahead if it is one of `ops` (AND/OR may also be written as words).
    fn operator(&self, ops: &[&'static str]) -> Option<&'static str> {
        match self.peek()? {
            Token::Op(op) => ops.iter().copied().find(|o| o == op),
            Token::Word(word) => {
                ops.iter().copied().find(|o| o.eq_ignore_ascii_case(word) && (*o == "AND" || *o == "OR"))
            }
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Expr, MathError> {
        let mut left = self.and()?;
        while self.operator(&["OR"]).is_some() {
            self.at += 1;
            left = Expr::Binary(Op::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, MathError> {
        let mut left = self.comparison()?;
        while self.operator(&["AND"]).is_some() {
            self.at += 1;
            left = Expr::Binary(Op::And, Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, MathError> {
        let mut left = self.sum()?;
        while let Some(op) = self.operator(&["==", "!=", ">=", "<=", ">", "<"]) {
            self.at += 1;
            let op = match op {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                ">=" => Op::Ge,
                "<=" => Op::Le,
                ">" => Op::Gt,
                _ => Op::Lt,
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.sum()?));
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Expr, MathError> {
        let mut left = self.product()?;
        while let Some(op) = self.operator(&["+", "-"]) {
            self.at += 1;
            let op = if op == "+" { Op::Add } else { Op::Sub };
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, MathError> {
        let mut left = self.unary()?;
        while let Some(op) = self.operator(&["*", "/"]) {
            self.at += 1;
            let op = if op == "*" { Op::Mul } else { Op::Div };
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, MathError> {
        if self.operator(&["-"]).is_some() {
            self.at += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, MathError> {
        match self.next() {
            Some(Token::Number(number)) => Ok(Expr::Number(number)),
            Some(Token::Open) => {
                let inner = self.or()?;
                self.expect(&Token::Close, "')'")?;
                Ok(inner)
            }
            Some(Token::Word(word)) if self.peek() == Some(&Token::Open) => {
                self.at += 1;
                let mut arguments = Vec::new();
                if self.peek() != Some(&Token::Close) {
                    loop {
                        arguments.push(self.or()?);
                        if self.peek() == Some(&Token::Comma) {
                            self.at += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(&Token::Close, "')'")?;
                call(&word, arguments)
            }
            Some(Token::Word(word)) => Ok(Expr::Id(word)),
            other => error(format!("expected a number, an id or '(', found {other:?}")),
        }
    }
}

fn call(function: &str, mut arguments: Vec<Expr>) -> Result<Expr, MathError> {
    match (function.to_ascii_uppercase().as_str(), arguments.len()) {
        ("IF", 2 | 3) => {
            let otherwise = (arguments.len() == 3).then(|| Box::new(arguments.remove(2)));
            let then = arguments.remove(1);
            Ok(Expr::If(Box::new(arguments.remove(0)), Box::new(then), otherwise))
        }
        ("FILL", 2) => {
            let value = arguments.remove(1);
            Ok(Expr::Fill(Box::new(arguments.remove(0)), Box::new(value)))
        }
        ("IF", n) => error(format!("IF takes 2 or 3 arguments, not {n}")),
        ("FILL", n) => {
            error(format!("FILL takes a series and a value (REPEAT and LINEAR are not supported), not {n} arguments"))
        }
        (other, _) => error(format!("unsupported function {other}")),
    }
}

/// Parses an expression.
pub fn parse(text: &str) -> Result<Expr, MathError> {
    let mut parser = Parser { tokens: tokens(text)?, at: 0 };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => error(format!("unexpected {token:?} after a complete expression in {text:?}")),
    }
}

fn truth(value: f64) -> bool {
    value != 0.0
}

fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

impl Expr {
    /// The expression's value for one period; `lookup` answers an id's datapoint in that period
    /// (`Ok(None)`: no datapoint) or an error for an unknown id.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Result<Option<f64>, MathError>) -> Result<Option<f64>, MathError> {
        let value = match self {
            Expr::Number(number) => Some(*number),
            Expr::Id(id) => lookup(id)?,
            Expr::Neg(inner) => inner.eval(lookup)?.map(|v| -v),
            Expr::Fill(series, value) => match series.eval(lookup)? {
                Some(v) => Some(v),
                None => value.eval(lookup)?,
            },
            Expr::If(condition, then, otherwise) => match condition.eval(lookup)? {
                None => None,
                Some(c) if truth(c) => then.eval(lookup)?,
                Some(_) => match otherwise {
                    Some(otherwise) => otherwise.eval(lookup)?,
                    None => None,
                },
            },
            Expr::Binary(op, left, right) => {
                let (Some(a), Some(b)) = (left.eval(lookup)?, right.eval(lookup)?) else {
                    return Ok(None);
                };
                Some(match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                    Op::Div => a / b,
                    Op::Eq => flag(a == b),
                    Op::Ne => flag(a != b),
                    Op::Gt => flag(a > b),
                    Op::Ge => flag(a >= b),
                    Op::Lt => flag(a < b),
                    Op::Le => flag(a <= b),
                    Op::And => flag(truth(a) && truth(b)),
                    Op::Or => flag(truth(a) || truth(b)),
                })
            }
        };
        Ok(value.filter(|v| v.is_finite()))
    }

    /// Every id the expression reads, in order of appearance (repeats included).
    pub fn ids(&self) -> Vec<&str> {
        let mut ids = Vec::new();
        self.collect_ids(&mut ids);
        ids
    }

    fn collect_ids<'a>(&'a self, ids: &mut Vec<&'a str>) {
        match self {
            Expr::Number(_) => {}
            Expr::Id(id) => ids.push(id),
            Expr::Neg(inner) => inner.collect_ids(ids),
            Expr::Fill(a, b) | Expr::Binary(_, a, b) => {
                a.collect_ids(ids);
                b.collect_ids(ids);
            }
            Expr::If(c, a, b) => {
                c.collect_ids(ids);
                a.collect_ids(ids);
                if let Some(b) = b {
                    b.collect_ids(ids);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn eval(text: &str, values: &[(&str, Option<f64>)]) -> Option<f64> {
        let values: HashMap<&str, Option<f64>> = values.iter().copied().collect();
        let lookup = |id: &str| values.get(id).copied().ok_or_else(|| MathError(format!("unknown id {id}")));
        parse(text).unwrap().eval(&lookup).unwrap()
    }

    #[test]
    fn arithmetic_follows_the_usual_precedence() {
        assert_eq!(eval("1 + 2 * 3", &[]), Some(7.0));
        assert_eq!(eval("(1 + 2) * 3", &[]), Some(9.0));
        assert_eq!(eval("10 - 4 - 3", &[]), Some(3.0));
        assert_eq!(eval("100 / 10 / 2", &[]), Some(5.0));
        assert_eq!(eval("-2 * -3", &[]), Some(6.0));
        assert_eq!(eval("1000000 * 2", &[]), Some(2_000_000.0));
        assert_eq!(eval("1e6 + 2.5E-1", &[]), Some(1_000_000.25));
    }

    #[test]
    fn comparisons_and_logic_answer_one_or_zero() {
        assert_eq!(eval("2 > 1", &[]), Some(1.0));
        assert_eq!(eval("2 >= 3", &[]), Some(0.0));
        assert_eq!(eval("a == 0 OR b > 0", &[("a", Some(1.0)), ("b", Some(2.0))]), Some(1.0));
        assert_eq!(eval("a == 0 AND b > 0", &[("a", Some(1.0)), ("b", Some(2.0))]), Some(0.0));
        assert_eq!(eval("a != 0 && b <= 2 || 0", &[("a", Some(1.0)), ("b", Some(2.0))]), Some(1.0));
        // OR binds looser than AND, which binds looser than a comparison.
        assert_eq!(eval("1 OR 0 AND 0", &[]), Some(1.0));
        assert_eq!(eval("1 + 1 == 2", &[]), Some(1.0));
    }

    #[test]
    fn a_missing_datapoint_makes_the_result_missing_unless_filled() {
        assert_eq!(eval("100 * errors / calls", &[("errors", None), ("calls", Some(10.0))]), None);
        assert_eq!(eval("FILL(errors, 0) / calls", &[("errors", None), ("calls", Some(10.0))]), Some(0.0));
        assert_eq!(eval("FILL(errors, 7)", &[("errors", Some(3.0))]), Some(3.0));
        assert_eq!(eval("errors > 0 OR calls > 0", &[("errors", None), ("calls", Some(1.0))]), None);
    }

    #[test]
    fn division_by_zero_is_no_datapoint() {
        assert_eq!(eval("1 / 0", &[]), None);
        assert_eq!(eval("0 / 0", &[]), None);
    }

    #[test]
    fn if_picks_a_branch_and_without_else_leaves_a_gap() {
        assert_eq!(eval("IF(1, 2, 3)", &[]), Some(2.0));
        assert_eq!(eval("IF(0, 2, 3)", &[]), Some(3.0));
        assert_eq!(eval("IF(0, 2)", &[]), None);
        assert_eq!(eval("IF(c, 2, 3)", &[("c", None)]), None);
    }

    #[test]
    fn the_expressions_of_the_deployed_alarms_evaluate_as_intended() {
        let rate = "IF(FILL(calls, 0) > 0, 100 * FILL(errors, 0) / FILL(calls, 0), 0)";
        assert_eq!(eval(rate, &[("calls", Some(20.0)), ("errors", Some(5.0))]), Some(25.0));
        assert_eq!(eval(rate, &[("calls", Some(20.0)), ("errors", None)]), Some(0.0));
        assert_eq!(eval(rate, &[("calls", None), ("errors", None)]), Some(0.0));

        let failure =
            "IF(FILL(done, 0) + FILL(failed, 0) > 0, 100 * FILL(failed, 0) / (FILL(done, 0) + FILL(failed, 0)), 0)";
        assert_eq!(eval(failure, &[("done", None), ("failed", Some(2.0))]), Some(100.0));
        assert_eq!(eval(failure, &[("done", Some(3.0)), ("failed", Some(1.0))]), Some(25.0));

        let stuck = "IF(FILL(runs, 0) == 0 OR FILL(errors, 0) > 0, 1000000 * overdue, overdue)";
        assert_eq!(eval(stuck, &[("runs", None), ("errors", None), ("overdue", Some(2.0))]), Some(2_000_000.0));
        assert_eq!(
            eval(stuck, &[("runs", Some(1.0)), ("errors", Some(1.0)), ("overdue", Some(2.0))]),
            Some(2_000_000.0)
        );
        assert_eq!(eval(stuck, &[("runs", Some(1.0)), ("errors", Some(0.0)), ("overdue", Some(2.0))]), Some(2.0));
        assert_eq!(eval(stuck, &[("runs", Some(1.0)), ("errors", None), ("overdue", None)]), None);
    }

    #[test]
    fn unknown_ids_functions_and_malformed_text_are_errors() {
        let lookup = |id: &str| Err(MathError(format!("unknown id {id}")));
        assert!(parse("nope + 1").unwrap().eval(&lookup).is_err());
        assert!(parse("RATE(m1)").is_err());
        assert!(parse("FILL(m1, REPEAT)").is_ok(), "parses; REPEAT is then an unknown id");
        assert!(parse("FILL(m1)").is_err());
        assert!(parse("1 +").is_err());
        assert!(parse("(1 + 2").is_err());
        assert!(parse("1 2").is_err());
        assert!(parse("a $ b").is_err());
    }

    #[test]
    fn ids_lists_what_an_expression_reads() {
        let expr = parse("IF(FILL(calls, 0) > 0, 100 * FILL(errors, 0) / FILL(calls, 0), 0)").unwrap();
        assert_eq!(expr.ids(), ["calls", "errors", "calls"]);
    }
}
