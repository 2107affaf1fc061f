//! A subset of Go's text/template, enough for docker-style `--format`:
//! `{{.Field}}`, nested `{{.A.B}}`, `{{json .X}}`, `{{join .X ","}}`,
//! `{{index .Labels "k"}}`, `{{upper ..}}`/`{{lower ..}}`/`{{len ..}}`,
//! and the `table` prefix, all evaluated over a `serde_json::Value`.

use serde_json::Value;

/// Errors while parsing or running a template.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("template parsing error: unclosed action in {0:?}")]
    Unclosed(String),
    #[error("template parsing error: function {name:?} not defined (in {action:?})")]
    UnknownFunction { name: String, action: String },
    #[error("template parsing error: bad argument {arg:?} in {action:?}")]
    BadArgument { arg: String, action: String },
    #[error("template: executing {action:?}: {detail}")]
    Exec { action: String, detail: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` as a path (empty = `.`).
    Field(Vec<String>),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Action {
        src: String,
        func: Option<String>,
        args: Vec<Arg>,
    },
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
    /// The format started with `table`.
    pub table: bool,
}

const FUNCS: &[&str] = &[
    "json", "join", "index", "upper", "lower", "len", "title", "println",
];

/// Turns the two-character escapes `\t` and `\n` the user typed into the real characters.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

fn parse_arg(tok: &str, action: &str) -> Result<Arg, TemplateError> {
    if tok == "." {
        return Ok(Arg::Field(Vec::new()));
    }
    if let Some(rest) = tok.strip_prefix('.') {
        return Ok(Arg::Field(rest.split('.').map(str::to_string).collect()));
    }
    if tok.len() >= 2 && tok.starts_with('"') && tok.ends_with('"') {
        return Ok(Arg::Str(unescape(&tok[1..tok.len() - 1])));
    }
    Err(TemplateError::BadArgument {
        arg: tok.to_string(),
        action: action.to_string(),
    })
}

/// Splits an action on whitespace, keeping quoted strings whole.
fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Template {
    pub fn parse(format: &str) -> Result<Template, TemplateError> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, format),
        };
        let mut pieces = Vec::new();
        let mut rest = body;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(unescape(&rest[..start])));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(rest[start..].to_string()))?;
            let src = after[..end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            let toks = tokenize(src);
            let (func, argtoks) = match toks.first() {
                Some(first) if !first.starts_with('.') && !first.starts_with('"') => {
                    if !FUNCS.contains(&first.as_str()) {
                        return Err(TemplateError::UnknownFunction {
                            name: first.clone(),
                            action: src.to_string(),
                        });
                    }
                    (Some(first.clone()), &toks[1..])
                }
                _ => (None, &toks[..]),
            };
            let args = argtoks
                .iter()
                .map(|t| parse_arg(t, src))
                .collect::<Result<Vec<_>, _>>()?;
            pieces.push(Piece::Action {
                src: src.to_string(),
                func,
                args,
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(unescape(rest)));
        }
        Ok(Template { pieces, table })
    }

    /// Renders the template against `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Action { src, func, args } => {
                    out.push_str(&eval(src, func.as_deref(), args, data)?);
                }
            }
        }
        Ok(out)
    }

    /// Renders the header row of a table: each field action is replaced by
    /// the header name from `headers` (field name → column title), or by
    /// the upper-cased field name when it has none.
    pub fn render_header(&self, headers: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Action { args, .. } => {
                    let name = args
                        .iter()
                        .find_map(|a| match a {
                            Arg::Field(path) => path.last().cloned(),
                            Arg::Str(_) => None,
                        })
                        .unwrap_or_default();
                    let title = headers
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_else(|| name.to_uppercase());
                    out.push_str(&title);
                }
            }
        }
        out
    }
}

fn lookup<'a>(data: &'a Value, path: &[String], src: &str) -> Result<&'a Value, TemplateError> {
    let mut cur = data;
    for (i, key) in path.iter().enumerate() {
        cur = match cur {
            Value::Object(m) => match m.get(key) {
                Some(v) => v,
                None => {
                    return Err(TemplateError::Exec {
                        action: src.to_string(),
                        detail: format!("can't evaluate field {key}"),
                    })
                }
            },
            Value::Null if i > 0 => return Ok(&Value::Null),
            _ => {
                return Err(TemplateError::Exec {
                    action: src.to_string(),
                    detail: format!("can't evaluate field {key} in a non-object"),
                })
            }
        };
    }
    Ok(cur)
}

/// Go's `fmt` rendering of a value: strings bare, `<no value>` for null,
/// maps as `map[k:v]`, slices as `[a b]`.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_string(&m[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn eval(
    src: &str,
    func: Option<&str>,
    args: &[Arg],
    data: &Value,
) -> Result<String, TemplateError> {
    let vals = args
        .iter()
        .map(|a| match a {
            Arg::Field(p) => lookup(data, p, src).cloned(),
            Arg::Str(s) => Ok(Value::String(s.clone())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let want = |n: usize| {
        if vals.len() == n {
            Ok(())
        } else {
            Err(TemplateError::Exec {
                action: src.to_string(),
                detail: format!("wrong number of args: want {n}, got {}", vals.len()),
            })
        }
    };
    match func {
        None => {
            want(1)?;
            Ok(go_string(&vals[0]))
        }
        Some("json") => {
            want(1)?;
            serde_json::to_string(&vals[0]).map_err(|e| TemplateError::Exec {
                action: src.to_string(),
                detail: e.to_string(),
            })
        }
        Some("join") => {
            want(2)?;
            let sep = go_string(&vals[1]);
            match &vals[0] {
                Value::Array(a) => Ok(a.iter().map(go_string).collect::<Vec<_>>().join(&sep)),
                Value::Null => Ok(String::new()),
                other => Ok(go_string(other)),
            }
        }
        Some("index") => {
            want(2)?;
            match (&vals[0], &vals[1]) {
                (Value::Object(m), Value::String(k)) => Ok(m
                    .get(k)
                    .map(go_string)
                    .unwrap_or_else(|| "<no value>".into())),
                (Value::Array(a), Value::String(k)) => {
                    let i: usize = k.parse().map_err(|_| TemplateError::Exec {
                        action: src.to_string(),
                        detail: format!("bad index {k:?}"),
                    })?;
                    Ok(a.get(i).map(go_string).unwrap_or_default())
                }
                (Value::Null, _) => Ok("<no value>".into()),
                _ => Err(TemplateError::Exec {
                    action: src.to_string(),
                    detail: "index of a non-map".into(),
                }),
            }
        }
        Some("upper") => {
            want(1)?;
            Ok(go_string(&vals[0]).to_uppercase())
        }
        Some("lower") => {
            want(1)?;
            Ok(go_string(&vals[0]).to_lowercase())
        }
        Some("title") => {
            want(1)?;
            let s = go_string(&vals[0]);
            let mut c = s.chars();
            Ok(match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            })
        }
        Some("println") => Ok(vals.iter().map(go_string).collect::<Vec<_>>().join(" ") + "\n"),
        Some("len") => {
            want(1)?;
            Ok(match &vals[0] {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                _ => 0,
            }
            .to_string())
        }
        Some(other) => Err(TemplateError::UnknownFunction {
            name: other.to_string(),
            action: src.to_string(),
        }),
    }
}

/// Aligns tab-separated rows into padded columns like Go's tabwriter with
/// docker's settings (min width 10, padding 3); the last cell is not padded.
pub fn tabulate(rows: &[String]) -> String {
    let split: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let ncols = split.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for r in &split {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.chars().count() + 3).max(10);
            }
        }
    }
    let mut out = String::new();
    for r in &split {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let pad = widths[i] - c.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end_matches(' '));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(fmt: &str, v: &Value) -> String {
        Template::parse(fmt)
            .expect("parse")
            .render(v)
            .expect("render")
    }

    #[test]
    fn fields_and_nesting() {
        let v = json!({"Id": "abc", "State": {"Pid": 42, "OOMKilled": false}, "Name": "/web"});
        assert_eq!(r("{{.Id}}", &v), "abc");
        assert_eq!(r("{{.State.Pid}} {{ .State.OOMKilled }}", &v), "42 false");
        assert_eq!(r("id={{.Id}}\\tname={{.Name}}", &v), "id=abc\tname=/web");
    }

    #[test]
    fn json_function() {
        let v = json!({"Config": {"Cmd": ["echo", "hi"]}, "N": null});
        assert_eq!(r("{{json .Config}}", &v), r#"{"Cmd":["echo","hi"]}"#);
        assert_eq!(r("{{json .}}", &json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(r("{{json .N}}", &v), "null");
    }

    #[test]
    fn go_rendering_of_composites() {
        let v = json!({"L": {"b": "2", "a": "1"}, "A": ["x", "y"], "N": null});
        assert_eq!(r("{{.L}}", &v), "map[a:1 b:2]");
        assert_eq!(r("{{.A}}", &v), "[x y]");
        assert_eq!(r("{{.N}}", &v), "<no value>");
        assert_eq!(r("{{join .A \", \"}}", &v), "x, y");
        assert_eq!(r("{{index .L \"b\"}}", &v), "2");
        assert_eq!(r("{{upper .A}}", &v), "[X Y]");
        assert_eq!(r("{{len .A}}", &v), "2");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Template::parse("{{.Id"),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            Template::parse("{{frob .Id}}"),
            Err(TemplateError::UnknownFunction { .. })
        ));
        let t = Template::parse("{{.Missing}}").expect("parse");
        let err = t.render(&json!({"Id": "x"})).expect_err("missing field");
        assert!(
            err.to_string().contains("can't evaluate field Missing"),
            "{err}"
        );
        // Walking into a null nested object yields <no value>, like Go's nil map.
        assert_eq!(r("{{.A.B}}", &json!({"A": null})), "<no value>");
    }

    #[test]
    fn table_prefix_and_header() {
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").expect("parse");
        assert!(t.table);
        assert_eq!(
            t.render_header(&[("ID", "CONTAINER ID"), ("Names", "NAMES")]),
            "CONTAINER ID\tNAMES"
        );
        assert_eq!(
            t.render(&json!({"ID": "1", "Names": "n"})).expect("render"),
            "1\tn"
        );
        assert!(!Template::parse("tablet").expect("parse").table);
    }

    #[test]
    fn tabwriter_alignment() {
        let rows = vec![
            "CONTAINER ID\tIMAGE\tNAMES".to_string(),
            "0123456789ab\tbusybox\tweb".to_string(),
        ];
        assert_eq!(
            tabulate(&rows),
            "CONTAINER ID   IMAGE     NAMES\n0123456789ab   busybox   web\n"
        );
    }
}
