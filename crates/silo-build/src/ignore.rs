//! `.dockerignore` with Docker's rules: one pattern a line, `#` comments,
//! paths cleaned (no leading `/` or `./`), Go's `filepath.Match` syntax
//! (`*`, `?`, `[…]`, `\` escapes) per path element, `**` for any number of
//! elements, `!` exceptions, the last matching line wins, and a pattern
//! that matches a directory matches everything under it.

/// One pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<String>,
    exclude: bool,
}

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// Cleans a path the way Go's `filepath.Clean` does for these patterns.
fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other.to_string()),
        }
    }
    out
}

impl Ignore {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (exclude, body) = match l.strip_prefix('!') {
                    Some(b) => (false, b.trim()),
                    None => (true, l),
                };
                let parts = clean(body);
                (!parts.is_empty()).then_some(Pattern { parts, exclude })
            })
            .collect();
        Ignore { patterns }
    }

    /// Whether the context path `path` (relative, `/`-separated) is left
    /// out of the build.
    pub fn excludes(&self, path: &str) -> bool {
        let parts = clean(path);
        let mut excluded = false;
        for p in &self.patterns {
            // The path itself or one of its parent directories.
            let hit = (1..=parts.len()).any(|n| match_parts(&p.parts, &parts[..n]));
            if hit {
                excluded = p.exclude;
            }
        }
        excluded
    }

    /// Whether an exception (`!`) could bring back something under the
    /// excluded directory `dir` (so the walk must still go in).
    pub fn may_include_under(&self, dir: &str) -> bool {
        let d = clean(dir);
        self.patterns.iter().any(|p| {
            !p.exclude
                && (p.parts.iter().any(|x| x == "**")
                    || (p.parts.len() > d.len()
                        && p.parts[..d.len()]
                            .iter()
                            .zip(&d)
                            .all(|(pat, name)| glob(pat, name))))
        })
    }
}

/// Matches pattern elements against path elements; `**` takes any number.
fn match_parts(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_parts(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, tail)) => glob(first, name) && match_parts(rest, tail),
            None => false,
        },
    }
}

/// Go's `filepath.Match` for one element: `*`, `?`, `[…]` (with `^`/`!`
/// negation and ranges), `\` escapes.
pub fn glob(pat: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(&c) = n.first() else { return false };
                let mut i = 1;
                let negate = matches!(p.get(1), Some('^' | '!'));
                if negate {
                    i += 1;
                }
                let mut hit = false;
                let mut first = true;
                while i < p.len() && (p[i] != ']' || first) {
                    first = false;
                    let lo = if p[i] == '\\' && i + 1 < p.len() {
                        i += 1;
                        p[i]
                    } else {
                        p[i]
                    };
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                        let hi = p[i + 2];
                        hit |= lo <= c && c <= hi;
                        i += 3;
                    } else {
                        hit |= lo == c;
                        i += 1;
                    }
                }
                if i >= p.len() {
                    return false; // unclosed class matches nothing
                }
                hit != negate && go(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_rules() {
        let ig = Ignore::parse(
            "# comment\n*.log\n/build\n**/tmp\n!important.log\ndocs/*.md\n!docs/keep.md\n./secret?\n[abc]x\n",
        );
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("important.log"), "exception after the rule");
        assert!(!ig.excludes("sub/a.log"), "* does not cross /");
        assert!(
            ig.excludes("build") && ig.excludes("build/out/x"),
            "a directory's contents"
        );
        assert!(ig.excludes("tmp") && ig.excludes("a/b/tmp/c"));
        assert!(ig.excludes("docs/readme.md") && !ig.excludes("docs/keep.md"));
        assert!(ig.excludes("secret1") && !ig.excludes("secret12"));
        assert!(ig.excludes("bx") && !ig.excludes("dx"));
        assert!(!ig.excludes("src/main.rs"));
        assert!(ig.may_include_under("docs"));
        assert!(!ig.may_include_under("build"));
    }

    #[test]
    fn globs() {
        assert!(glob("a*c", "abbc") && glob("a?c", "abc") && !glob("a?c", "ac"));
        assert!(glob("[a-c]1", "b1") && !glob("[^a-c]1", "b1") && glob("[!a]1", "z1"));
        assert!(glob("\\*", "*") && !glob("\\*", "a"));
        assert!(!glob("[ab", "a"));
    }
}
