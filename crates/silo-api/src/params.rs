//! Query-string and JSON-body parsing with Docker's conventions: booleans
//! as `1`/`true`/`0`/`false`, filters as a JSON object in a query parameter,
//! repeated parameters (`changes`), and errors that name the bad parameter.

use crate::error::{ApiError, ApiResult};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use silo_docker::Filters;
use std::str::FromStr;

/// All query parameters of a request, in order, duplicates kept.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// The last value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of `name` unless it is absent or empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean parameter; absent means `default`.
    pub fn flag(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "invalid boolean value {v:?} for query parameter {name:?}"
                ))
            }),
        }
    }

    /// A numeric parameter; absent or empty means None.
    pub fn number<T: FromStr>(&self, name: &str) -> ApiResult<Option<T>> {
        match self.non_empty(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("invalid number {v:?} for query parameter {name:?}"))
            }),
        }
    }

    /// A required parameter.
    pub fn required(&self, name: &str) -> ApiResult<&str> {
        self.non_empty(name)
            .ok_or_else(|| ApiError::BadRequest(format!("query parameter {name:?} is required")))
    }

    /// The `filters` parameter (JSON), or empty filters when absent.
    pub fn filters(&self) -> ApiResult<Filters> {
        match self.non_empty("filters") {
            None => Ok(Filters::new()),
            Some(raw) => parse_filters(raw),
        }
    }

    /// A Unix time in seconds (fractions allowed), as `since`/`until` carry it.
    pub fn timestamp(&self, name: &str) -> ApiResult<Option<f64>> {
        self.number::<f64>(name)
    }
}

/// Docker's boolean spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "True" | "TRUE" | "t" | "yes" => Some(true),
        "" | "0" | "false" | "False" | "FALSE" | "f" | "no" => Some(false),
        _ => None,
    }
}

/// Parses filters in both forms Docker accepts: `{"k":["v"]}` and the
/// older `{"k":{"v":true}}`.
pub fn parse_filters(raw: &str) -> ApiResult<Filters> {
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::BadRequest(format!("invalid filters {raw:?}: {e}")))?;
    let obj = value.as_object().ok_or_else(|| {
        ApiError::BadRequest(format!("invalid filters {raw:?}: expected a JSON object"))
    })?;
    let mut out = Filters::new();
    for (key, v) in obj {
        let values = match v {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    other => Err(ApiError::BadRequest(format!(
                        "invalid filters: value {other} of {key:?} is not a string"
                    ))),
                })
                .collect::<ApiResult<Vec<_>>>()?,
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(false))
                .map(|(k, _)| k.clone())
                .collect(),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "invalid filters: {key:?} must be a list or an object, not {other}"
                )))
            }
        };
        out.insert(key.clone(), values);
    }
    Ok(out)
}

/// Parses a JSON body, naming the field that was wrong. An empty body is
/// read as `{}` when `allow_empty`.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8], what: &str, allow_empty: bool) -> ApiResult<T> {
    let bytes: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        if !allow_empty {
            return Err(ApiError::BadRequest(format!(
                "{what}: the request body is empty"
            )));
        }
        b"{}"
    } else {
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("{what}: invalid JSON: {e}")))?;
    // Keys match fields ignoring case, as with dockerd's Go decoder.
    serde_path_to_error::deserialize(crate::fold::Folded(value)).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            ApiError::BadRequest(format!("{what}: invalid JSON: {}", e.inner()))
        } else {
            ApiError::BadRequest(format!("{what}: invalid JSON at {path}: {}", e.inner()))
        }
    })
}

/// Splits `repo:tag` (a tag is after the last ':' that follows the last '/').
pub fn split_repo_tag(reference: &str) -> (&str, Option<&str>) {
    let slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(i) => (
            &reference[..slash + i],
            Some(&reference[slash + i + 1..]).filter(|t| !t.is_empty()),
        ),
        None => (reference, None),
    }
}

/// Standard base64 with padding (the archive stat header).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_in_docker_spellings() {
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        let p = Params(vec![("all".into(), "maybe".into())]);
        let err = p.flag("all", false).unwrap_err().to_string();
        assert!(err.contains("\"all\""), "{err}");
    }

    #[test]
    fn filters_both_forms() {
        let f = parse_filters(r#"{"status":["running","paused"],"label":{"a=b":true,"c":false}}"#)
            .unwrap();
        assert_eq!(f["status"], vec!["running", "paused"]);
        assert_eq!(f["label"], vec!["a=b"]);
        assert!(parse_filters("[1]").is_err());
        assert!(parse_filters("{\"x\":[1]}").is_err());
        assert!(parse_filters("{").is_err());
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            #[serde(rename = "Memory")]
            memory: Option<i64>,
        }
        let err = json_body::<B>(br#"{"Memory":"lots"}"#, "container create", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Memory"), "{err}");
        assert!(json_body::<B>(b"", "x", false).is_err());
        assert!(json_body::<B>(b"", "x", true).is_ok());
        assert!(json_body::<B>(b"{nope", "x", true).is_err());
    }

    #[test]
    fn repo_tag_split() {
        assert_eq!(
            split_repo_tag("busybox:latest"),
            ("busybox", Some("latest"))
        );
        assert_eq!(split_repo_tag("busybox"), ("busybox", None));
        assert_eq!(split_repo_tag("host:5000/a/b"), ("host:5000/a/b", None));
        assert_eq!(
            split_repo_tag("host:5000/a/b:v1"),
            ("host:5000/a/b", Some("v1"))
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn repeated_and_numeric_params() {
        let p = Params(vec![
            ("changes".into(), "CMD sh".into()),
            ("changes".into(), "ENV A=1".into()),
            ("t".into(), "5".into()),
            ("h".into(), "x".into()),
        ]);
        assert_eq!(p.all("changes"), vec!["CMD sh", "ENV A=1"]);
        assert_eq!(p.number::<i64>("t").unwrap(), Some(5));
        assert_eq!(p.number::<i64>("missing").unwrap(), None);
        assert!(p.number::<u16>("h").is_err());
        assert!(p.required("name").is_err());
    }
}
