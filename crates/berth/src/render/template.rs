//! The subset of Go's text/template that Docker's `--format` users write,
//! evaluated over JSON values: fields, variables, pipelines, if/else,
//! range, with, and Docker's functions (json, upper, lower, join, split,
//! title, truncate, pad, printf, index, len, eq/ne/lt/le/gt/ge, and/or/not).

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template: {}", self.0)
    }
}

impl std::error::Error for TemplateError {}

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Pipe,
    Declare,
    Comma,
}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Lit(Value),
    Sub(Box<Pipeline>, Vec<String>),
    Func(String),
}

#[derive(Debug, Clone)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
struct Pipeline {
    decl: Vec<String>,
    cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Out(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

fn lex(src: &str) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut toks = Vec::new();
    let fields = |chars: &[char], i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if *i == start {
                break;
            }
            out.push(chars[start..*i].iter().collect());
        }
        out
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                toks.push(Tok::LParen);
                i += 1
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2
            }
            '=' => {
                toks.push(Tok::Declare);
                i += 1
            }
            '.' => {
                let f = fields(&chars, &mut i);
                if f.is_empty() {
                    i += 1;
                }
                toks.push(Tok::Field(f));
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let f = fields(&chars, &mut i);
                toks.push(Tok::Var(name, f));
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return err("unterminated quoted string"),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let e = chars.get(i + 1).copied().unwrap_or('\\');
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                toks.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| TemplateError("unterminated raw quoted string".into()))?;
                toks.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n = s
                    .parse::<f64>()
                    .map_err(|_| TemplateError(format!("bad number syntax: {s:?}")))?;
                toks.push(Tok::Num(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn pipeline(&mut self) -> Result<Pipeline, TemplateError> {
        let mut decl = Vec::new();
        // `$x :=` or `$i, $e :=`
        let save = self.pos;
        while let Some(Tok::Var(name, f)) = self.peek().cloned() {
            if !f.is_empty() {
                break;
            }
            self.pos += 1;
            decl.push(name);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                Some(Tok::Declare) => {
                    self.pos += 1;
                    break;
                }
                _ => {
                    decl.clear();
                    self.pos = save;
                    break;
                }
            }
        }
        let mut cmds = vec![self.command()?];
        while let Some(Tok::Pipe) = self.peek() {
            self.pos += 1;
            cmds.push(self.command()?);
        }
        Ok(Pipeline { decl, cmds })
    }

    fn command(&mut self) -> Result<Command, TemplateError> {
        let mut args = Vec::new();
        while let Some(t) = self.peek().cloned() {
            let arg = match t {
                Tok::Pipe | Tok::RParen => break,
                Tok::Field(f) => Arg::Field(f),
                Tok::Var(n, f) => Arg::Var(n, f),
                Tok::Str(s) => Arg::Lit(Value::String(s)),
                Tok::Num(n) => Arg::Lit(
                    serde_json::Number::from_f64(n)
                        .map(Value::Number)
                        .unwrap_or(Value::Null),
                ),
                Tok::Ident(id) => match id.as_str() {
                    "true" => Arg::Lit(Value::Bool(true)),
                    "false" => Arg::Lit(Value::Bool(false)),
                    "nil" => Arg::Lit(Value::Null),
                    _ => Arg::Func(id),
                },
                Tok::LParen => {
                    self.pos += 1;
                    let p = self.pipeline()?;
                    if self.peek() != Some(&Tok::RParen) {
                        return err("unclosed left paren");
                    }
                    // Fields after the paren: (.A).B
                    let mut fields = Vec::new();
                    if let Some(Tok::Field(f)) = self.toks.get(self.pos + 1) {
                        fields = f.clone();
                        self.pos += 1;
                    }
                    Arg::Sub(Box::new(p), fields)
                }
                Tok::Comma | Tok::Declare => return err("unexpected token in command"),
            };
            self.pos += 1;
            args.push(arg);
        }
        if args.is_empty() {
            return err("missing value for command");
        }
        Ok(Command { args })
    }
}

fn parse_action(src: &str) -> Result<Pipeline, TemplateError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let pipe = p.pipeline()?;
    if p.pos != p.toks.len() {
        return err(format!("unexpected tokens in {src:?}"));
    }
    Ok(pipe)
}

enum Item {
    Text(String),
    Action(String),
}

fn split(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        items.push(Item::Text(text.to_string()));
        let close = after
            .find("}}")
            .ok_or_else(|| TemplateError("unclosed action".into()))?;
        let mut inner = &after[..close];
        if trim_left {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        items.push(Item::Action(inner.trim().to_string()));
        rest = &after[close + 2..];
    }
    items.push(Item::Text(
        if trim_next { rest.trim_start() } else { rest }.to_string(),
    ));
    Ok(items)
}

/// Parses nodes until one of `stops` (an `end`/`else` keyword) is met; returns it.
fn parse_nodes(
    items: &[Item],
    pos: &mut usize,
    in_block: bool,
) -> Result<(Vec<Node>, Option<String>), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let item = &items[*pos];
        *pos += 1;
        match item {
            Item::Text(t) if t.is_empty() => {}
            Item::Text(t) => nodes.push(Node::Text(t.clone())),
            Item::Action(a) => {
                if a.starts_with("/*") {
                    continue;
                }
                let (kw, rest) = a.split_once(char::is_whitespace).unwrap_or((a, ""));
                match kw {
                    "end" | "else" if in_block => return Ok((nodes, Some(a.clone()))),
                    "end" | "else" => return err(format!("unexpected {{{{{kw}}}}}")),
                    "if" | "range" | "with" => nodes.push(parse_block(kw, rest, items, pos)?),
                    _ => nodes.push(Node::Out(parse_action(a)?)),
                }
            }
        }
    }
    if in_block {
        return err("unexpected EOF");
    }
    Ok((nodes, None))
}

fn parse_block(
    kw: &str,
    cond: &str,
    items: &[Item],
    pos: &mut usize,
) -> Result<Node, TemplateError> {
    let pipe = parse_action(cond)?;
    let (body, stop) = parse_nodes(items, pos, true)?;
    let stop = stop.expect("in_block returns a stop");
    let mut alt = Vec::new();
    if stop != "end" {
        let rest = stop.strip_prefix("else").unwrap_or("").trim();
        if rest.is_empty() {
            let (nodes, stop) = parse_nodes(items, pos, true)?;
            if stop.as_deref() != Some("end") {
                return err("expected end after else");
            }
            alt = nodes;
        } else {
            // `else if …` / `else with …` chains: a nested block that shares our end.
            let (kw2, cond2) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if !matches!(kw2, "if" | "with") {
                return err(format!("unexpected {{{{else {rest}}}}}"));
            }
            alt = vec![parse_block(kw2, cond2, items, pos)?];
        }
    }
    Ok(match kw {
        "if" => Node::If(pipe, body, alt),
        "range" => Node::Range(pipe, body, alt),
        _ => Node::With(pipe, body, alt),
    })
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let items = split(src)?;
        let mut pos = 0;
        let (nodes, _) = parse_nodes(&items, &mut pos, false)?;
        Ok(Template { nodes })
    }

    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut st = State {
            vars: vec![("$".into(), data.clone())],
        };
        let mut out = String::new();
        st.walk(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

struct State {
    vars: Vec<(String, Value)>,
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How Go's fmt prints a value with %v.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(to_text).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", to_text(&o[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn field(v: &Value, path: &[String]) -> Result<Value, TemplateError> {
    let mut cur = v.clone();
    for name in path {
        cur = match cur {
            Value::Object(ref o) => o.get(name).cloned().unwrap_or(Value::Null),
            Value::Null => Value::Null,
            other => {
                return err(format!(
                    "can't evaluate field {name} in type {}",
                    match other {
                        Value::String(_) => "string",
                        Value::Array(_) => "[]interface {}",
                        Value::Bool(_) => "bool",
                        _ => "number",
                    }
                ))
            }
        };
    }
    Ok(cur)
}

impl State {
    fn walk(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Out(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        out.push_str(&to_text(&v));
                    }
                }
                Node::If(p, body, alt) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot)?;
                    let r = self.walk(if truthy(&v) { body } else { alt }, dot, out);
                    self.vars.truncate(mark);
                    r?;
                }
                Node::With(p, body, alt) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot)?;
                    let r = if truthy(&v) {
                        self.walk(body, &v, out)
                    } else {
                        self.walk(alt, dot, out)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range(p, body, alt) => {
                    let mark = self.vars.len();
                    let bare = Pipeline {
                        decl: Vec::new(),
                        cmds: p.cmds.clone(),
                    };
                    let v = self.pipeline(&bare, dot)?;
                    let items: Vec<(Value, Value)> = match &v {
                        Value::Array(a) => a
                            .iter()
                            .enumerate()
                            .map(|(i, x)| (Value::from(i), x.clone()))
                            .collect(),
                        Value::Object(o) => {
                            let mut keys: Vec<&String> = o.keys().collect();
                            keys.sort();
                            keys.into_iter()
                                .map(|k| (Value::from(k.clone()), o[k].clone()))
                                .collect()
                        }
                        Value::Null => Vec::new(),
                        Value::Number(n) => (0..n.as_u64().unwrap_or(0))
                            .map(|i| (Value::from(i), Value::from(i)))
                            .collect(),
                        other => {
                            return err(format!("range can't iterate over {}", to_text(other)))
                        }
                    };
                    if items.is_empty() {
                        self.walk(alt, dot, out)?;
                    }
                    for (k, item) in items {
                        match p.decl.as_slice() {
                            [e] => self.vars.push((e.clone(), item.clone())),
                            [i, e] => {
                                self.vars.push((i.clone(), k));
                                self.vars.push((e.clone(), item.clone()));
                            }
                            _ => {}
                        }
                        let r = self.walk(body, &item, out);
                        self.vars.truncate(mark);
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut prev: Option<Value> = None;
        for c in &p.cmds {
            prev = Some(self.command(c, dot, prev)?);
        }
        let v = prev.unwrap_or(Value::Null);
        if let Some(name) = p.decl.first() {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        match a {
            Arg::Field(f) => field(dot, f),
            Arg::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| TemplateError(format!("undefined variable \"{name}\"")))?;
                field(&v, f)
            }
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Sub(p, f) => {
                let v = self.pipeline(p, dot)?;
                field(&v, f)
            }
            Arg::Func(name) => call(name, Vec::new()),
        }
    }

    fn command(
        &mut self,
        c: &Command,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        if let Arg::Func(name) = &c.args[0] {
            let mut args = Vec::new();
            for a in &c.args[1..] {
                args.push(self.arg(a, dot)?);
            }
            args.extend(piped);
            return call(name, args);
        }
        if c.args.len() > 1 || piped.is_some() {
            return err("can't give argument to non-function");
        }
        self.arg(&c.args[0], dot)
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, TemplateError> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x
                .partial_cmp(&y)
                .ok_or_else(|| TemplateError("incomparable values".into())),
            _ => err("incompatible types for comparison"),
        },
    }
}

fn want(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn s(v: &Value) -> String {
    to_text(v)
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
    use std::cmp::Ordering::*;
    Ok(match name {
        "json" => {
            want(name, &args, 1)?;
            Value::String(serde_json::to_string(&args[0]).expect("JSON value serialises"))
        }
        "upper" => {
            want(name, &args, 1)?;
            Value::String(s(&args[0]).to_uppercase())
        }
        "lower" => {
            want(name, &args, 1)?;
            Value::String(s(&args[0]).to_lowercase())
        }
        "title" => {
            want(name, &args, 1)?;
            let mut out = String::new();
            let mut start = true;
            for c in s(&args[0]).chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            Value::String(out)
        }
        "split" => {
            want(name, &args, 2)?;
            Value::Array(
                s(&args[0])
                    .split(&s(&args[1]))
                    .map(|p| Value::String(p.into()))
                    .collect(),
            )
        }
        "join" => {
            want(name, &args, 2)?;
            let parts: Vec<String> = match &args[0] {
                Value::Array(a) => a.iter().map(to_text).collect(),
                Value::Null => Vec::new(),
                other => vec![to_text(other)],
            };
            Value::String(parts.join(&s(&args[1])))
        }
        "truncate" => {
            want(name, &args, 2)?;
            let n = num(&args[1]).unwrap_or(0.0) as usize;
            Value::String(s(&args[0]).chars().take(n).collect())
        }
        "pad" => {
            want(name, &args, 3)?;
            let l = " ".repeat(num(&args[1]).unwrap_or(0.0) as usize);
            let r = " ".repeat(num(&args[2]).unwrap_or(0.0) as usize);
            Value::String(format!("{l}{}{r}", s(&args[0])))
        }
        "print" => Value::String(args.iter().map(to_text).collect::<Vec<_>>().join("")),
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(to_text).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            if args.is_empty() {
                return err("wrong number of args for printf: want at least 1 got 0");
            }
            Value::String(printf(&s(&args[0]), &args[1..]))
        }
        "index" => {
            if args.is_empty() {
                return err("wrong number of args for index: want at least 1 got 0");
            }
            let mut cur = args[0].clone();
            for k in &args[1..] {
                cur = match (&cur, k) {
                    (Value::Array(a), _) => {
                        let i = num(k).ok_or_else(|| {
                            TemplateError("cannot index slice with non-integer".into())
                        })?;
                        a.get(i as usize)
                            .cloned()
                            .ok_or_else(|| TemplateError(format!("index out of range: {i}")))?
                    }
                    (Value::Object(o), _) => o.get(&s(k)).cloned().unwrap_or(Value::Null),
                    (Value::Null, _) => Value::Null,
                    _ => return err(format!("can't index item of type {}", to_text(&cur))),
                };
            }
            cur
        }
        "slice" => {
            if args.is_empty() {
                return err("wrong number of args for slice");
            }
            let from = args.get(1).and_then(num).unwrap_or(0.0) as usize;
            match &args[0] {
                Value::String(st) => {
                    let to = args
                        .get(2)
                        .and_then(num)
                        .map(|n| n as usize)
                        .unwrap_or(st.len());
                    Value::String(
                        st.get(from..to)
                            .ok_or_else(|| TemplateError("slice index out of range".into()))?
                            .into(),
                    )
                }
                Value::Array(a) => {
                    let to = args
                        .get(2)
                        .and_then(num)
                        .map(|n| n as usize)
                        .unwrap_or(a.len());
                    Value::Array(
                        a.get(from..to)
                            .ok_or_else(|| TemplateError("slice index out of range".into()))?
                            .to_vec(),
                    )
                }
                _ => return err("can't slice item"),
            }
        }
        "len" => {
            want(name, &args, 1)?;
            Value::from(match &args[0] {
                Value::String(st) => st.len(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::Null => 0,
                other => return err(format!("len of type {}", to_text(other))),
            })
        }
        "eq" => {
            if args.len() < 2 {
                return err("missing argument for comparison");
            }
            let first = &args[0];
            Value::Bool(args[1..].iter().any(|b| match (num(first), num(b)) {
                (Some(x), Some(y)) => x == y,
                _ => first == b,
            }))
        }
        "ne" => {
            want(name, &args, 2)?;
            Value::Bool(match (num(&args[0]), num(&args[1])) {
                (Some(x), Some(y)) => x != y,
                _ => args[0] != args[1],
            })
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            let o = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            })
        }
        "and" => args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "not" => {
            want(name, &args, 1)?;
            Value::Bool(!truthy(&args[0]))
        }
        _ => return err(format!(":1: function \"{name}\" not defined")),
    })
}

/// Go's fmt verbs that format strings use: %s %v %d %q %t %x %f %%, with
/// `-`, `0`, width and precision.
fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let mut text = match verb {
            'd' => num(arg)
                .map(|n| format!("{}", n as i64))
                .unwrap_or_else(|| format!("%!d({})", to_text(arg))),
            'f' | 'F' => num(arg)
                .map(|n| format!("{n:.*}", prec.unwrap_or(6)))
                .unwrap_or_else(|| format!("%!f({})", to_text(arg))),
            'q' => serde_json::to_string(&to_text(arg)).expect("string serialises"),
            'x' => match arg {
                Value::Number(_) => format!("{:x}", num(arg).unwrap_or(0.0) as i64),
                other => to_text(other).bytes().map(|b| format!("{b:02x}")).collect(),
            },
            _ => {
                let t = to_text(arg);
                match prec {
                    Some(p) if matches!(verb, 's' | 'v') => t.chars().take(p).collect(),
                    _ => t,
                }
            }
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = text.chars().count();
        if len < w {
            let pad = w - len;
            if left {
                text.push_str(&" ".repeat(pad));
            } else if zero && verb != 's' {
                text = format!("{}{text}", "0".repeat(pad));
            } else {
                text = format!("{}{text}", " ".repeat(pad));
            }
        }
        out.push_str(&text);
    }
    for extra in next {
        out.push_str(&format!("%!(EXTRA {})", to_text(extra)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_and_functions() {
        let v = json!({"Os": "linux", "Config": {"Cmd": ["sh", "-c"], "Env": null}, "Size": 2140160, "Tags": ["a", "b"]});
        assert_eq!(r("{{.Os}}/{{.Config.Cmd}}", &v), "linux/[sh -c]");
        assert_eq!(
            r("{{json .Config}}", &v),
            r#"{"Cmd":["sh","-c"],"Env":null}"#
        );
        assert_eq!(r("{{.Missing}}", &v), "<no value>");
        assert_eq!(r("{{.Size}}", &v), "2140160");
        assert_eq!(r(r#"{{join .Tags ", "}}"#, &v), "a, b");
        assert_eq!(r("{{.Os | upper}}", &v), "LINUX");
        assert_eq!(
            r(r#"{{printf "%-6s|%5d" .Os .Size}}"#, &v),
            "linux |2140160"
        );
        assert_eq!(r("{{index .Tags 1}} {{len .Tags}}", &v), "b 2");
        assert_eq!(r(r#"{{index .Config "Cmd"}}"#, &v), "[sh -c]");
        assert_eq!(r("{{(index .Tags 0) | upper}}", &v), "A");
    }

    #[test]
    fn control_flow() {
        let v = json!({"A": true, "N": 0, "L": [1, 2, 3], "M": {"b": 2, "a": 1}, "Name": "x"});
        assert_eq!(r("{{if .A}}yes{{else}}no{{end}}", &v), "yes");
        assert_eq!(
            r("{{if .N}}yes{{else if .A}}elif{{else}}no{{end}}", &v),
            "elif"
        );
        assert_eq!(r("{{range .L}}[{{.}}]{{end}}", &v), "[1][2][3]");
        assert_eq!(
            r("{{range $i, $e := .L}}{{$i}}={{$e}} {{end}}", &v),
            "0=1 1=2 2=3 "
        );
        assert_eq!(
            r("{{range $k, $v := .M}}{{$k}}:{{$v}},{{end}}", &v),
            "a:1,b:2,"
        );
        assert_eq!(r("{{range .Nope}}x{{else}}empty{{end}}", &v), "empty");
        assert_eq!(r("{{with .Name}}<{{.}}>{{end}}", &v), "<x>");
        assert_eq!(r("{{$n := .Name}}{{range .L}}{{$n}}{{end}}", &v), "xxx");
        assert_eq!(r("{{if eq .Name \"y\" \"x\"}}in{{end}}", &v), "in");
        assert_eq!(r("{{if and .A (gt (len .L) 2)}}big{{end}}", &v), "big");
        assert_eq!(r("a  {{- .Name -}}  b", &v), "axb");
        assert_eq!(r("{{/* comment */}}z", &v), "z");
        assert_eq!(r("{{.M}}", &v), "map[a:1 b:2]");
    }

    #[test]
    fn errors() {
        let e = Template::parse("{{nope .X}}")
            .unwrap()
            .render(&json!({}))
            .unwrap_err();
        assert!(
            e.to_string().contains("function \"nope\" not defined"),
            "{e}"
        );
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{end}}").is_err());
        let e = Template::parse("{{.A.B}}")
            .unwrap()
            .render(&json!({"A": "s"}))
            .unwrap_err();
        assert!(e.to_string().contains("can't evaluate field B"), "{e}");
    }
}
