//! Registry authentication: anonymous first; on a 401, the challenge in
//! `WWW-Authenticate` says how: `Basic` (send the credentials) or `Bearer`
//! (fetch a token for the repository scope from the realm, with the
//! credentials if there are any, and send the token).

use std::sync::Mutex;

use base64::Engine as _;

use crate::{RegistryError, Result};

/// A user's registry credentials, as `docker login` stores them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// An OAuth refresh token some registries hand out instead of a password.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default)]
enum Scheme {
    #[default]
    Anonymous,
    Basic,
    Bearer(String),
}

#[derive(Debug)]
pub(crate) struct Auth {
    credentials: Option<Credentials>,
    /// "repository:<path>:pull" or "…:pull,push"; empty for a login check.
    scope: String,
    scheme: Mutex<Scheme>,
}

/// The parameters of a challenge: `Bearer realm="…",service="…"`.
fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (value, tail) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (&v[..end], &v[end..]),
                None => (v, ""),
            }
        };
        params.push((k, value.to_string()));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Auth {
    pub(crate) fn new(credentials: Option<Credentials>, path: &str, push: bool) -> Auth {
        let scope = if path.is_empty() {
            String::new()
        } else if push {
            format!("repository:{path}:pull,push")
        } else {
            format!("repository:{path}:pull")
        };
        Auth {
            credentials,
            scope,
            scheme: Mutex::new(Scheme::Anonymous),
        }
    }

    fn scheme(&self) -> std::sync::MutexGuard<'_, Scheme> {
        self.scheme.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Authorization header to send now, if any.
    pub(crate) fn header(&self) -> Option<String> {
        match &*self.scheme() {
            Scheme::Anonymous => None,
            Scheme::Basic => self.credentials.as_ref().map(Credentials::basic),
            Scheme::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }

    /// Answers a 401 challenge; false when there is nothing more to try.
    pub(crate) fn respond(
        &self,
        challenge: &str,
        agent: &ureq::Agent,
        registry: &str,
    ) -> Result<bool> {
        let (scheme, params) = parse_challenge(challenge);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match scheme.as_str() {
            "basic" => {
                if self.credentials.is_none() {
                    return Ok(false);
                }
                *self.scheme() = Scheme::Basic;
                Ok(true)
            }
            "bearer" => {
                let Some(realm) = param("realm") else {
                    return Ok(false);
                };
                let service = param("service").unwrap_or_default();
                let scope = param("scope").unwrap_or_else(|| self.scope.clone());
                let token = self.fetch_token(agent, &realm, &service, &scope, registry)?;
                *self.scheme() = Scheme::Bearer(token);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        realm: &str,
        service: &str,
        scope: &str,
        registry: &str,
    ) -> Result<String> {
        let transport = |source| RegistryError::Transport {
            url: realm.to_string(),
            source,
        };
        let resp = match self
            .credentials
            .as_ref()
            .and_then(|c| c.identity_token.clone())
        {
            Some(refresh) => {
                let body = format!(
                    "grant_type=refresh_token&refresh_token={}&service={}&scope={}&client_id=silo",
                    form_encode(&refresh),
                    form_encode(service),
                    form_encode(scope)
                );
                agent
                    .post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(body.as_bytes())
                    .map_err(transport)?
            }
            None => {
                let mut url = format!("{realm}?service={}", form_encode(service));
                if !scope.is_empty() {
                    url.push_str(&format!("&scope={}", form_encode(scope)));
                }
                let req = agent.get(&url);
                let req = match &self.credentials {
                    Some(c) => req.header("Authorization", &c.basic()),
                    None => req,
                };
                req.call().map_err(transport)?
            }
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: registry.to_string(),
                message: "the token service refused the credentials".to_string(),
            });
        }
        if !(200..300).contains(&status) {
            return Err(RegistryError::Status {
                url: realm.to_string(),
                status,
                message: "token request failed".to_string(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let body = resp
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(transport)?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            url: realm.to_string(),
            message: format!("token response: {e}"),
        })?;
        let tok = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if tok.is_empty() {
            return Err(RegistryError::Protocol {
                url: realm.to_string(),
                message: "token response without a token".to_string(),
            });
        }
        Ok(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(p[2].1, "repository:library/busybox:pull");
        let (s, p) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!((s.as_str(), p[0].1.as_str()), ("basic", "basic-realm"));
    }

    #[test]
    fn credentials_do_not_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
            identity_token: None,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic(), "Basic dTpodW50ZXIy");
    }
}
