//! Docker's side of pull, push, login and distribution inspect: the
//! `X-Registry-Auth` header, the references Docker's query parameters
//! spell in pieces, and the JSON progress stream (`status`, `id`,
//! `progressDetail`, `aux`, `errorDetail`) the CLI draws bars from.

use base64::Engine as _;
use bollard_stubs::models::{AuthResponse, DistributionInspect, OciDescriptor, OciPlatform};
use serde::Deserialize;
use silo_engine::{Credentials, Progress, TransferRequest};
use silo_oci::image::Platform;

use crate::{invalid, Docker, Result};

/// The JSON inside `X-Registry-Auth` and the body of `POST /auth`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthJson {
    username: String,
    password: String,
    /// base64 "user:password" (what config.json stores).
    auth: String,
    serveraddress: String,
    identitytoken: String,
    registrytoken: String,
}

impl AuthJson {
    fn credentials(self) -> Option<Credentials> {
        let (mut user, mut pass) = (self.username, self.password);
        if user.is_empty() && !self.auth.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            (user, pass) = (u.to_string(), p.to_string());
        }
        let token = [self.identitytoken, self.registrytoken]
            .into_iter()
            .find(|t| !t.is_empty());
        if user.is_empty() && token.is_none() {
            return None;
        }
        Some(Credentials {
            username: user,
            password: pass,
            identity_token: token,
        })
    }
}

/// Decodes an `X-Registry-Auth` header (base64url JSON; clients send it
/// with or without padding, and some send standard base64). An empty
/// header or `{}` means anonymous.
pub fn registry_auth(header: Option<&str>) -> Result<Option<Credentials>> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let trimmed = h.trim_end_matches('=');
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| {
            invalid(
                "X-Registry-Auth",
                format!("X-Registry-Auth is not base64: {e}"),
            )
        })?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json: AuthJson = serde_json::from_slice(&raw).map_err(|e| {
        invalid(
            "X-Registry-Auth",
            format!("X-Registry-Auth is not valid JSON: {e}"),
        )
    })?;
    Ok(json.credentials())
}

/// `fromImage` and `tag` of `POST /images/create` as one reference.
pub fn pull_reference(from_image: &str, tag: Option<&str>) -> Result<String> {
    let parsed = silo_oci::reference::Reference::parse(from_image)
        .map_err(|e| invalid("fromImage", e.to_string()))?;
    match tag.filter(|t| !t.is_empty()) {
        None if parsed.tag.is_none() && parsed.digest.is_none() => Err(crate::Error::NotImplemented(
            "pulling every tag of a repository (docker pull --all-tags) is not supported; name a tag"
                .to_string(),
        )),
        None => Ok(from_image.to_string()),
        Some(_) if parsed.tag.is_some() || parsed.digest.is_some() => Ok(from_image.to_string()),
        Some(t) if t.starts_with("sha256:") => Ok(format!("{from_image}@{t}")),
        Some(t) => Ok(format!("{from_image}:{t}")),
    }
}

/// "[=====>     ]  1.2MB/3.4MB", as Docker's progress string.
fn bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let human = |n: u64| silo_units::human_size(n as f64);
    if total == 0 {
        return human(current);
    }
    let filled = (current.min(total) * WIDTH / total) as usize;
    let mut s = String::from("[");
    s.push_str(&"=".repeat(filled.saturating_sub(1)));
    if filled > 0 {
        s.push('>');
    }
    s.push_str(&" ".repeat(WIDTH as usize - filled));
    s.push_str(&format!("] {:>8}/{}", human(current), human(total)));
    s
}

fn line(v: serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\r');
    b.push(b'\n');
    b
}

fn status(id: &str, text: &str) -> Vec<u8> {
    line(serde_json::json!({"status": text, "progressDetail": {}, "id": id}))
}

fn bytes(id: &str, text: &str, current: u64, total: u64) -> Vec<u8> {
    line(serde_json::json!({
        "status": text,
        "progressDetail": {"current": current, "total": total},
        "progress": bar(current, total),
        "id": id,
    }))
}

/// One progress event of a pull as Docker's JSON message line(s).
pub fn pull_progress(p: &Progress) -> Vec<u8> {
    match p {
        Progress::Resolving { repository, tag } => {
            line(serde_json::json!({"status": format!("Pulling from {repository}"), "id": tag}))
        }
        Progress::LayerQueued { layer } => status(layer, "Pulling fs layer"),
        Progress::LayerExists { layer } => status(layer, "Already exists"),
        Progress::Downloading {
            layer,
            current,
            total,
        } => bytes(layer, "Downloading", *current, *total),
        Progress::Retrying { layer, attempt, .. } => {
            status(layer, &format!("Retrying in {} seconds", attempt))
        }
        Progress::Downloaded { layer } => {
            let mut v = status(layer, "Verifying Checksum");
            v.extend(status(layer, "Download complete"));
            v
        }
        Progress::Extracting { layer } => status(layer, "Extracting"),
        Progress::Extracted { layer } => status(layer, "Pull complete"),
        Progress::Digest { digest, .. } => {
            line(serde_json::json!({"status": format!("Digest: {digest}")}))
        }
        Progress::Done { reference, updated } => {
            let text = if *updated {
                format!("Status: Downloaded newer image for {reference}")
            } else {
                format!("Status: Image is up to date for {reference}")
            };
            line(serde_json::json!({ "status": text }))
        }
        other => push_progress(other),
    }
}

/// One progress event of a push as Docker's JSON message line(s).
pub fn push_progress(p: &Progress) -> Vec<u8> {
    match p {
        Progress::Resolving { repository, .. } => line(serde_json::json!({
            "status": format!("The push refers to repository [{repository}]")
        })),
        Progress::Preparing { layer } => status(layer, "Preparing"),
        Progress::Uploading {
            layer,
            current,
            total,
        } => bytes(layer, "Pushing", *current, *total),
        Progress::Uploaded { layer } => status(layer, "Pushed"),
        Progress::Mounted { layer } => status(layer, "Layer already exists"),
        Progress::Digest { tag, digest, size } => {
            let mut v = line(serde_json::json!({
                "status": format!("{tag}: digest: {digest} size: {size}")
            }));
            v.extend(line(serde_json::json!({
                "progressDetail": {},
                "aux": {"Tag": tag, "Digest": digest, "Size": size}
            })));
            v
        }
        other => pull_progress(other),
    }
}

/// A failure after the stream started, as Docker's error line.
pub fn error_line(message: &str) -> Vec<u8> {
    line(serde_json::json!({"errorDetail": {"message": message}, "error": message}))
}

impl Docker {
    /// `POST /images/create?fromImage=…`: pulls, calling `emit` with each
    /// line of Docker's progress stream.
    pub fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        credentials: Option<Credentials>,
        emit: &(dyn Fn(Vec<u8>) + Sync),
    ) -> Result<()> {
        let platform = match platform.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(Platform::parse(p).ok_or_else(|| {
                invalid(
                    "platform",
                    format!("platform {p:?}: want os/arch[/variant], for example linux/amd64"),
                )
            })?),
        };
        let req = TransferRequest {
            reference: reference.to_string(),
            credentials,
            platform,
        };
        self.engine.pull(&req, &|p| emit(pull_progress(&p)))?;
        Ok(())
    }

    /// `POST /images/{name}/push`.
    pub fn push(
        &self,
        name: &str,
        tag: Option<&str>,
        credentials: Option<Credentials>,
        emit: &(dyn Fn(Vec<u8>) + Sync),
    ) -> Result<()> {
        let reference = match tag.filter(|t| !t.is_empty()) {
            Some(t) => format!("{name}:{t}"),
            None => name.to_string(),
        };
        let req = TransferRequest {
            reference,
            credentials,
            platform: None,
        };
        self.engine.push(&req, &|p| emit(push_progress(&p)))?;
        Ok(())
    }

    /// `POST /auth`: checks the credentials with the registry.
    pub fn login(&self, body: &[u8]) -> Result<AuthResponse> {
        let json: AuthJson = serde_json::from_slice(body)
            .map_err(|e| invalid("body", format!("auth config: {e}")))?;
        let server = json.serveraddress.clone();
        let creds = json.credentials().ok_or_else(|| {
            invalid(
                "username",
                "auth config: username and password are required",
            )
        })?;
        self.engine.login(&server, creds)?;
        Ok(AuthResponse {
            status: "Login Succeeded".to_string(),
            identity_token: None,
        })
    }

    /// `GET /distribution/{name}/json`.
    pub fn distribution(
        &self,
        name: &str,
        credentials: Option<Credentials>,
    ) -> Result<DistributionInspect> {
        let req = TransferRequest {
            reference: name.to_string(),
            credentials,
            platform: None,
        };
        let (desc, platforms) = self.engine.distribution(&req)?;
        Ok(DistributionInspect {
            descriptor: OciDescriptor {
                media_type: Some(desc.media_type),
                digest: Some(desc.digest),
                size: Some(desc.size as i64),
                ..OciDescriptor::default()
            },
            platforms: platforms
                .into_iter()
                .map(|p| OciPlatform {
                    architecture: Some(p.architecture),
                    os: Some(p.os),
                    os_version: p.os_version,
                    os_features: (!p.os_features.is_empty()).then_some(p.os_features),
                    variant: p.variant,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_decodes_what_clients_send() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
        let c = registry_auth(Some(&enc(
            r#"{"username":"u","password":"p","serveraddress":"127.0.0.1:5000"}"#,
        )))
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert!(registry_auth(Some(&enc("{}"))).unwrap().is_none());
        assert!(registry_auth(None).unwrap().is_none());
        let from_auth = enc(r#"{"auth":"dTpw"}"#);
        assert_eq!(
            registry_auth(Some(&from_auth)).unwrap().unwrap().password,
            "p"
        );
        let e = registry_auth(Some("!!!")).unwrap_err();
        assert!(e.to_string().contains("X-Registry-Auth"), "{e}");
    }

    #[test]
    fn pull_references_join_tag_and_digest() {
        assert_eq!(
            pull_reference("busybox", Some("1.36")).unwrap(),
            "busybox:1.36"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            pull_reference("busybox", Some(&d)).unwrap(),
            format!("busybox@{d}")
        );
        assert_eq!(
            pull_reference("busybox:2", Some("latest")).unwrap(),
            "busybox:2"
        );
        assert!(pull_reference("busybox", None).is_err());
        assert!(pull_reference("Bad", Some("x")).is_err());
    }

    #[test]
    fn progress_lines_are_dockers() {
        let l = pull_progress(&Progress::Downloading {
            layer: "abc".into(),
            current: 5,
            total: 10,
        });
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["progressDetail"]["total"], 10);
        assert_eq!(v["id"], "abc");
        let aux = push_progress(&Progress::Digest {
            tag: "1".into(),
            digest: "sha256:x".into(),
            size: 9,
        });
        let second = aux.split(|b| *b == b'\n').nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(second).unwrap();
        assert_eq!(v["aux"]["Digest"], "sha256:x");
    }
}
