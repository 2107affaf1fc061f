//! Image references ("busybox", "busybox:1.36", "localhost:5000/a/b:tag"):
//! validation and normalization to the "repo:tag" form stored in repositories.json.

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
}

/// Parses `reference` and returns it as "repository:tag", with ":latest"
/// added when no tag is given and Docker Hub's implicit prefixes
/// ("docker.io/library/", "docker.io/") removed.
pub fn normalize(reference: &str) -> Result<String, ReferenceError> {
    let r = || reference.to_string();
    if reference.is_empty() {
        return Err(ReferenceError::Empty { reference: r() });
    }
    if reference.len() > 255 {
        return Err(ReferenceError::TooLong { reference: r() });
    }
    if reference.contains('@') {
        return Err(ReferenceError::Digest { reference: r() });
    }
    let last_slash = reference.rfind('/');
    let (name, tag) = match reference.rfind(':') {
        Some(i) if last_slash.is_none_or(|s| i > s) => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    };
    if !valid_tag(tag) {
        return Err(ReferenceError::BadTag {
            reference: r(),
            tag: tag.to_string(),
        });
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
    let repo = match domain {
        Some("docker.io" | "index.docker.io") => match path.strip_prefix("library/") {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => path,
        },
        Some(d) => format!("{d}/{path}"),
        None => path,
    };
    Ok(format!("{repo}:{tag}"))
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
    fn error_names_the_reference() {
        let e = normalize("Up/Per").unwrap_err();
        assert!(e.to_string().contains("Up/Per"), "{e}");
    }
}
