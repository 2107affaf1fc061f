//! OCI runtime-spec and image-spec types, kept here so every layer shares one
//! schema for `config.json`, the state document, the features document, image
//! manifests, indexes and configs, and image references.
//!
//! Every field is public and optional where the spec lets it be absent, and
//! unknown fields are ignored (the spec says a runtime must not fail on
//! them). Parsing goes through `serde_path_to_error`, so an error names the
//! JSON path of the bad field (for example `linux.namespaces[2].type`).

mod defaults;
pub mod image;
pub mod image_config;
pub mod reference;
mod spec;
mod state;

pub use defaults::{
    default_spec, mount, system_mounts, DEFAULT_CAPS, MASKED_PATHS, READONLY_PATHS,
};
pub use spec::*;
pub use state::*;

use std::path::{Path, PathBuf};

/// The spec version this runtime writes.
pub const OCI_VERSION: &str = "1.2.0";
/// The oldest spec version accepted in a config.json.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// The newest spec version this runtime knows.
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// Why a config.json could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON at `{field}`: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error(
        "{path}: field `ociVersion`: unsupported version {version:?} (this runtime accepts 1.x)"
    )]
    Version { path: PathBuf, version: String },
}

/// Parses a config.json from bytes; `path` only labels errors.
pub fn parse_spec(bytes: &[u8], path: &Path) -> Result<Spec, LoadError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        LoadError::Parse {
            path: path.to_path_buf(),
            field: if field.is_empty() || field == "." {
                "(document)".into()
            } else {
                field
            },
            message: e.into_inner().to_string(),
        }
    })?;
    if !version_supported(&spec.oci_version) {
        return Err(LoadError::Version {
            path: path.to_path_buf(),
            version: spec.oci_version.clone(),
        });
    }
    Ok(spec)
}

/// Reads and parses `<bundle>/config.json`.
pub fn load_spec(path: &Path) -> Result<Spec, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_spec(&bytes, path)
}

/// True for any `1.x[.y][-suffix]` version string.
pub fn version_supported(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.');
    matches!(parts.next(), Some("1"))
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_all_1x_versions() {
        for v in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.3.0", "1.2"] {
            assert!(version_supported(v), "{v}");
        }
        for v in ["0.9.0", "2.0.0", "", "1.x", "abc"] {
            assert!(!version_supported(v), "{v}");
        }
    }

    #[test]
    fn error_names_the_bad_field() {
        let doc = br#"{"ociVersion":"1.0.0","root":{"path":"rootfs"},
            "linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#;
        let err = parse_spec(doc, Path::new("config.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("linux.namespaces[1].type"), "{msg}");
        assert!(msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn rejects_version_2() {
        let doc = br#"{"ociVersion":"2.0.0"}"#;
        let err = parse_spec(doc, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("ociVersion"));
    }

    #[test]
    fn default_spec_round_trips() {
        let spec = default_spec();
        let bytes = serde_json::to_vec(&spec).unwrap();
        let back = parse_spec(&bytes, Path::new("x")).unwrap();
        assert_eq!(back.process.unwrap().args, vec!["sh".to_string()]);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let doc = br#"{"ociVersion":"1.1.0","futureThing":{"a":1},"process":{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0},"zzz":1}}"#;
        let spec = parse_spec(doc, Path::new("c.json")).unwrap();
        assert_eq!(spec.process.unwrap().args, vec!["true".to_string()]);
    }
}
