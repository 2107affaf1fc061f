//! Image references ("busybox", "busybox:1.36", "localhost:5000/a/b:tag",
//! "alpine@sha256:…"): validation, the full form a registry needs
//! ([`Reference`]: domain, path, tag, digest) and the short "familiar" form
//! Docker shows and stores ("busybox:latest", [`normalize`]).

use thiserror::Error;

/// Why a reference string was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference {reference:?}: empty")]
    Empty { reference: String },
    #[error("invalid reference {reference:?}: longer than 255 characters")]
    TooLong { reference: String },
    #[error("invalid reference {reference:?}: digest references cannot be tagged")]
    Digest { reference: String },
    #[error("invalid reference {reference:?}: bad tag {tag:?}")]
    BadTag { reference: String, tag: String },
    #[error("invalid reference {reference:?}: bad registry host {domain:?}")]
    BadDomain { reference: String, domain: String },
    #[error("invalid reference {reference:?}: bad path component {component:?} (lowercase letters, digits and separators . _ __ - only)")]
    BadComponent {
        reference: String,
        component: String,
    },
    #[error(
        "invalid reference {reference:?}: a repository name cannot be a 64-character hex string"
    )]
    HexName { reference: String },
    #[error(
        "invalid reference {reference:?}: bad digest {digest:?} (want sha256:<64 hex digits>)"
    )]
    BadDigest { reference: String, digest: String },
}

/// Docker Hub's registry name in full references.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host[:port]; "docker.io" when none was given.
    pub domain: String,
    /// Repository path inside the registry ("library/busybox" on Docker Hub).
    pub path: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// The manifest digest ("sha256:<hex>"), if one was given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `reference`, filling in Docker Hub's implicit domain and
    /// "library/" prefix. Neither tag nor digest is added.
    pub fn parse(reference: &str) -> Result<Reference, ReferenceError> {
        let r = || reference.to_string();
        let (rest, digest) = match reference.split_once('@') {
            Some((n, d)) => {
                if !valid_digest(d) {
                    return Err(ReferenceError::BadDigest {
                        reference: r(),
                        digest: d.to_string(),
                    });
                }
                (n, Some(d.to_string()))
            }
            None => (reference, None),
        };
        let parsed = split(reference, rest)?;
        let mut path = parsed.path;
        let domain = match parsed.domain {
            Some("index.docker.io") | None => DOCKER_HUB.to_string(),
            Some(d) => d.to_string(),
        };
        if domain == DOCKER_HUB && !path.contains('/') {
            path = format!("library/{path}");
        }
        Ok(Reference {
            domain,
            path,
            tag: parsed.tag.map(str::to_string),
            digest,
        })
    }

    /// The reference with tag "latest" when it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_string());
        }
        self
    }

    /// The repository as Docker shows it: "busybox", "me/app",
    /// "127.0.0.1:5000/app".
    pub fn familiar_repo(&self) -> String {
        if self.domain == DOCKER_HUB {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// "repo:tag" in the familiar form (the key of the tag store), if tagged.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.familiar_repo()))
    }

    /// The tag, or else the digest: what a registry's manifest URL takes.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl std::fmt::Display for Reference {
    /// The full form: "docker.io/library/busybox:latest@sha256:…".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// "sha256:" followed by 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

struct Split<'a> {
    domain: Option<&'a str>,
    path: String,
    tag: Option<&'a str>,
}

/// Splits and validates "[domain/]path[:tag]" (`rest`); `reference` is the
/// whole input, for error messages.
fn split<'a>(reference: &str, rest: &'a str) -> Result<Split<'a>, ReferenceError> {
    let r = || reference.to_string();
    if rest.is_empty() {
        return Err(ReferenceError::Empty { reference: r() });
    }
    if reference.len() > 255 {
        return Err(ReferenceError::TooLong { reference: r() });
    }
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(i) if last_slash.is_none_or(|s| i > s) => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(ReferenceError::BadTag {
                reference: r(),
                tag: t.to_string(),
            });
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let domain = if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        Some(parts.remove(0))
    } else {
        None
    };
    if let Some(d) = domain {
        if !valid_domain(d) {
            return Err(ReferenceError::BadDomain {
                reference: r(),
                domain: d.to_string(),
            });
        }
    }
    for c in &parts {
        if !valid_component(c) {
            return Err(ReferenceError::BadComponent {
                reference: r(),
                component: c.to_string(),
            });
        }
    }
    let path = parts.join("/");
    if domain.is_none() && path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReferenceError::HexName { reference: r() });
    }
    Ok(Split { domain, path, tag })
}

/// Parses `reference` and returns it as "repository:tag", with ":latest"
/// added when no tag is given and Docker Hub's implicit prefixes
/// ("docker.io/library/", "docker.io/") removed.
pub fn normalize(reference: &str) -> Result<String, ReferenceError> {
    if reference.contains('@') {
        return Err(ReferenceError::Digest {
            reference: reference.to_string(),
        });
    }
    let parsed = Reference::parse(reference)?.with_default_tag();
    Ok(format!(
        "{}:{}",
        parsed.familiar_repo(),
        parsed.tag.as_deref().unwrap_or("latest")
    ))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_good_references() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(
            normalize("localhost:5000/a/b:tag").unwrap(),
            "localhost:5000/a/b:tag"
        );
        assert_eq!(
            normalize("localhost:5000/a/b").unwrap(),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(normalize("docker.io/library/alpine:3").unwrap(), "alpine:3");
        assert_eq!(normalize("docker.io/me/app").unwrap(), "me/app:latest");
        assert_eq!(normalize("my-app__x/y.z").unwrap(), "my-app__x/y.z:latest");
        assert_eq!(
            normalize("quay.io/org/img:v1_2-3").unwrap(),
            "quay.io/org/img:v1_2-3"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "-a",
            "a-",
            "a...b",
            "a___b",
            "busybox@sha256:abcd",
            "bad host:5000/x",
            "localhost:50a0/x",
            "a:b:c",
            &"a".repeat(256),
            &"ab".repeat(32),
            "x:t/",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_full_references() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert_eq!(r.familiar_repo(), "busybox");
        let r = Reference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        assert_eq!(r.familiar_tagged().unwrap(), "127.0.0.1:5000/a/b:v1");
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("me/app@{d}")).unwrap();
        assert_eq!(r.path, "me/app");
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.clone().with_default_tag().tag, None);
        assert!(Reference::parse("busybox@sha256:abcd").is_err());
        assert!(Reference::parse("busybox@md5:abcd").is_err());
        assert!(Reference::parse("Busybox").is_err());
    }

    #[test]
    fn error_names_the_reference() {
        let e = normalize("Up/Per").unwrap_err();
        assert!(e.to_string().contains("Up/Per"), "{e}");
    }
}
