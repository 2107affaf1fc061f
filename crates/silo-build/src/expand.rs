//! Variable substitution in instruction arguments, as the classic builder
//! does it: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alternative}`;
//! nothing inside single quotes; the escape character keeps a `$` literal.
//! Quotes are kept for the word splitting that follows.

/// Why a substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("missing '}}' in {0:?}")]
    Unclosed(String),
    #[error("unsupported modifier {modifier:?} in ${{{name}{modifier}…}} (use :- or :+)")]
    Modifier { name: String, modifier: String },
}

/// Expands `s`, looking variables up with `get` (None: unset, which
/// expands to nothing).
pub fn expand(
    s: &str,
    escape: char,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut single = false;
    let mut double = false;
    while i < chars.len() {
        let c = chars[i];
        if c == escape && !single && i + 1 < chars.len() {
            if chars[i + 1] == '$' {
                out.push('$');
            } else {
                out.push(c);
                out.push(chars[i + 1]);
            }
            i += 2;
            continue;
        }
        if c == '\'' && !double {
            single = !single;
        } else if c == '"' && !single {
            double = !double;
        }
        if c != '$' || single || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars[i + 1];
        if next == '{' {
            let close = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .ok_or_else(|| ExpandError::Unclosed(s.to_string()))?;
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            out.push_str(&braced(&inner, escape, get)?);
            i += 3 + close;
        } else if next.is_ascii_alphabetic() || next == '_' {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str(&get(&name).unwrap_or_default());
            i += 1 + len;
        } else {
            out.push('$');
            i += 1;
        }
    }
    Ok(out)
}

fn braced(
    inner: &str,
    escape: char,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let name_len = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .count();
    let (name, rest) = inner.split_at(name_len);
    let value = get(name);
    if rest.is_empty() {
        return Ok(value.unwrap_or_default());
    }
    let set = value.as_deref().is_some_and(|v| !v.is_empty());
    match rest.get(..2) {
        Some(":-") => Ok(if set {
            value.unwrap_or_default()
        } else {
            expand(&rest[2..], escape, get)?
        }),
        Some(":+") => Ok(if set {
            expand(&rest[2..], escape, get)?
        } else {
            String::new()
        }),
        _ => Err(ExpandError::Modifier {
            name: name.to_string(),
            modifier: rest.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(k: &str) -> Option<String> {
        match k {
            "A" => Some("one".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms_defaults_quotes_and_escapes() {
        let e = |s: &str| expand(s, '\\', &vars).unwrap();
        assert_eq!(e("$A/${A}x"), "one/onex");
        assert_eq!(e("${B:-two} ${A:-two} ${EMPTY:-three}"), "two one three");
        assert_eq!(e("${A:+set} ${B:+set}."), "set .");
        assert_eq!(e("'$A' \"$A\""), "'$A' \"one\"");
        assert_eq!(e("\"Bob's v$A\" $A"), "\"Bob's vone\" one");
        assert_eq!(e("\\$A cost $5"), "$A cost $5");
        assert_eq!(e("$B-end"), "-end");
        assert!(expand("${A", '\\', &vars).is_err());
        assert!(matches!(
            expand("${A?x}", '\\', &vars),
            Err(ExpandError::Modifier { .. })
        ));
    }
}
