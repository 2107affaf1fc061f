//! The connection to silod and JSON helpers on top of the HTTP client.

use crate::http::{Body, Client, HttpError, Response};
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The daemon endpoint.
pub struct App {
    pub client: Client,
}

impl App {
    pub fn new(host: &str) -> Result<App> {
        let Some(path) = host.strip_prefix("unix://") else {
            bail!("invalid host {host:?}: only unix:///path/to/socket is supported");
        };
        if path.is_empty() {
            bail!("invalid host {host:?}: empty socket path");
        }
        Ok(App {
            client: Client::new(path),
        })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.client.call("GET", path, Body::Empty)?;
        serde_json::from_slice(&body).with_context(|| format!("decoding the answer to GET {path}"))
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let raw = self.post_raw(path, body)?;
        serde_json::from_slice(&raw).with_context(|| format!("decoding the answer to POST {path}"))
    }

    pub fn post_raw<B: Serialize>(&self, path: &str, body: Option<&B>) -> Result<Vec<u8>> {
        let b = match body {
            Some(b) => Body::Json(serde_json::to_vec(b)?),
            None => Body::Empty,
        };
        Ok(self.client.call("POST", path, b)?)
    }

    pub fn post_empty(&self, path: &str) -> Result<()> {
        self.client.call("POST", path, Body::Empty)?;
        Ok(())
    }

    pub fn delete(&self, path: &str) -> Result<Vec<u8>> {
        Ok(self.client.call("DELETE", path, Body::Empty)?)
    }

    pub fn stream(&self, method: &str, path: &str) -> Result<Response, HttpError> {
        self.client.request(method, path, Body::Empty)
    }
}
