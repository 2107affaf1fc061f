//! The Dockerfile parser: parser directives (`# escape`, `# syntax`), line
//! continuations, comments, and each instruction split into its flags and
//! arguments (exec form as a JSON array, shell form as text). Variables are
//! not expanded here: that needs the build's ARG and ENV state, so the
//! builder does it per instruction with [`crate::expand`].

use thiserror::Error;

/// A Dockerfile that is not one; the line is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Dockerfile line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// An instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`.
    Exec(Vec<String>),
    /// Everything after the instruction and its flags, continuations joined.
    Shell(String),
}

impl Args {
    /// The arguments as text (a JSON array is shown as docker does).
    pub fn text(&self) -> String {
        match self {
            Args::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
            Args::Shell(s) => s.clone(),
        }
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper case (`RUN`).
    pub keyword: String,
    /// `--name=value` flags (`COPY --from=build`), in order.
    pub flags: Vec<(String, String)>,
    pub args: Args,
    /// The line the instruction starts on (1-based).
    pub line: usize,
    /// The instruction as written, continuations joined (for history and
    /// the cache key).
    pub original: String,
}

impl Instruction {
    /// A flag's value, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// Every instruction the classic builder knows.
pub const KEYWORDS: [&str; 18] = [
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    // Parser directives: `# key=value` lines at the very top.
    let mut first = 0;
    let mut seen = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(body) = l.trim().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = body.split_once('=') else {
            break;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k.contains(char::is_whitespace) || k.is_empty() {
            break;
        }
        if seen.contains(&k) {
            return Err(err(
                i + 1,
                format!("only one {k} parser directive can be used"),
            ));
        }
        match k.as_str() {
            "escape" => {
                escape = match v {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(
                            i + 1,
                            format!("invalid escape token {other:?}: it must be \\ or `"),
                        ))
                    }
                }
            }
            // BuildKit frontends: the classic builder reads the file itself.
            "syntax" | "check" => {}
            _ => break,
        }
        seen.push(k);
        first = i + 1;
    }
    let mut instructions = Vec::new();
    let mut i = first;
    while i < lines.len() {
        let start = i;
        let trimmed = lines[i].trim_start();
        i += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Join continuations; comment lines inside are dropped, as docker does.
        let mut logical = String::new();
        let mut cur = trimmed.trim_end().to_string();
        loop {
            match cur.strip_suffix(escape) {
                Some(head) if !head.ends_with(escape) || escape == '`' => {
                    logical.push_str(head);
                    // The next non-comment line goes on.
                    let mut next = None;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        if l.trim_start().starts_with('#') {
                            continue;
                        }
                        next = Some(l);
                        break;
                    }
                    match next {
                        Some(n) if n.trim().is_empty() => {
                            // An empty line ends nothing: docker keeps going.
                            cur = escape.to_string();
                        }
                        Some(n) => cur = n.trim_end().to_string(),
                        None => break,
                    }
                }
                _ => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        instructions.push(instruction(&logical, start + 1)?);
    }
    Ok(Dockerfile {
        escape,
        instructions,
    })
}

/// Splits one logical line into keyword, flags and arguments.
fn instruction(logical: &str, line: usize) -> Result<Instruction, ParseError> {
    let logical = logical.trim();
    let (word, rest) = match logical.find(char::is_whitespace) {
        Some(p) => (&logical[..p], logical[p..].trim_start()),
        None => (logical, ""),
    };
    let keyword = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(err(line, format!("unknown instruction: {word}")));
    }
    // Flags come first: --name=value (or --name for a boolean).
    let mut flags = Vec::new();
    let mut rest = rest;
    let takes_flags = matches!(
        keyword.as_str(),
        "FROM" | "COPY" | "ADD" | "RUN" | "HEALTHCHECK"
    );
    while takes_flags && rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let flag = &rest[2..end];
        let (k, v) = flag.split_once('=').unwrap_or((flag, "true"));
        if k.is_empty() {
            return Err(err(line, format!("{keyword}: empty flag name")));
        }
        flags.push((k.to_string(), v.to_string()));
        rest = rest[end..].trim_start();
    }
    let exec_form = matches!(
        keyword.as_str(),
        "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "COPY" | "ADD" | "VOLUME" | "HEALTHCHECK"
    );
    let args = if exec_form && rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Exec(v),
            // Not valid JSON: docker takes it as shell form, except SHELL.
            Err(e) if keyword == "SHELL" => {
                return Err(err(line, format!("SHELL requires a JSON array: {e}")))
            }
            Err(_) => Args::Shell(rest.to_string()),
        }
    } else {
        if keyword == "SHELL" {
            return Err(err(line, "SHELL requires the arguments to be in JSON form"));
        }
        Args::Shell(rest.to_string())
    };
    let needs_args = !matches!(keyword.as_str(), "CMD" | "ENTRYPOINT" | "HEALTHCHECK");
    if needs_args && args == Args::Shell(String::new()) {
        return Err(err(
            line,
            format!("{keyword} requires at least one argument"),
        ));
    }
    Ok(Instruction {
        keyword,
        flags,
        args,
        line,
        original: logical.to_string(),
    })
}

/// Splits shell-form words, honouring quotes and the escape character
/// (for COPY/ADD sources, EXPOSE, VOLUME, ARG, ONBUILD…).
pub fn words(s: &str, escape: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, c) if c == escape && quote != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in {s:?}"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `KEY=VALUE …` pairs (ENV, LABEL, ARG), or the legacy `KEY VALUE` form.
pub fn pairs(s: &str, escape: char, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let ws = words(s, escape)?;
    if ws.is_empty() {
        return Err("needs at least one KEY=VALUE".into());
    }
    if legacy && !ws[0].contains('=') {
        // ENV KEY value with spaces
        let (k, v) = s
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((s.trim(), ""));
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not KEY=VALUE")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_continuations_comments_and_forms() {
        let df = parse(
            "# syntax=docker/dockerfile:1\n# escape=\\\nFROM busybox AS base\n# a comment\nRUN echo a \\\n  # inside\n  && echo b\nCMD [\"sh\", \"-c\", \"echo hi\"]\nCOPY --from=base --chown=1:1 a b /dst/\nrun echo lower\n",
        )
        .unwrap();
        let k: Vec<&str> = df.instructions.iter().map(|i| i.keyword.as_str()).collect();
        assert_eq!(k, ["FROM", "RUN", "CMD", "COPY", "RUN"]);
        assert_eq!(
            df.instructions[1].args,
            Args::Shell("echo a   && echo b".into())
        );
        assert_eq!(df.instructions[1].line, 5);
        let blank = parse("FROM a\nRUN one \\\n\n  && two\n").unwrap();
        assert_eq!(
            blank.instructions[1].args,
            Args::Shell("one   && two".into())
        );
        assert_eq!(
            df.instructions[2].args,
            Args::Exec(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
        let copy = &df.instructions[3];
        assert_eq!(copy.flag("from"), Some("base"));
        assert_eq!(copy.flag("chown"), Some("1:1"));
        assert_eq!(copy.args, Args::Shell("a b /dst/".into()));
    }

    #[test]
    fn the_escape_directive_changes_the_continuation() {
        let df = parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  /w\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[1].args, Args::Shell("dir c:\\   /w".into()));
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = parse("FROM busybox\nFROB x\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown instruction: FROB"), "{e}");
        assert_eq!(parse("FROM busybox\nRUN\n").unwrap_err().line, 2);
        assert!(parse("FROM a\nSHELL sh -c\n").is_err());
        assert!(parse("# escape=x\nFROM a\n").is_err());
    }

    #[test]
    fn words_and_pairs() {
        assert_eq!(
            words(r#"a "b c" 'd e' f\ g"#, '\\').unwrap(),
            ["a", "b c", "d e", "f g"]
        );
        assert!(words("\"open", '\\').is_err());
        assert_eq!(
            pairs(r#"A=1 B="two words""#, '\\', true).unwrap(),
            [("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(
            pairs("PATH /usr/bin:/bin extra", '\\', true).unwrap(),
            [("PATH".to_string(), "/usr/bin:/bin extra".to_string())]
        );
        assert!(pairs("=x", '\\', false).is_err());
    }
}
