//! `runtime.v1.ImageService`: the engine's image store, shared with the
//! Docker side (an image pulled by either is seen by both).

use crate::proto as cri;
use crate::proto::image_service_server::ImageService;
use crate::{blocking, status, Cri};
use silo_engine::Engine;
use std::collections::HashMap;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

/// `pinned`: the kubelet's image GC leaves it alone (the pause image,
/// which only containers the CRI hides use).
fn to_image(i: &silo_storage::Image, pinned: bool) -> cri::Image {
    let user = i.config.config.user.clone().unwrap_or_default();
    let name = user.split(':').next().unwrap_or_default();
    let (uid, username) = match name.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) if name.is_empty() => (Some(cri::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, name.to_string()),
    };
    cri::Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: i.id.clone(),
            ..Default::default()
        }),
        pinned,
    }
}

fn image_name(spec: Option<cri::ImageSpec>) -> Result<String, Status> {
    let name = spec.map(|s| s.image).unwrap_or_default();
    if name.is_empty() {
        return Err(Status::invalid_argument("image.image is empty"));
    }
    Ok(name)
}

/// Docker-style basic auth: `auth` is base64 of `user:password`.
fn credentials(a: cri::AuthConfig) -> Result<Option<silo_engine::Credentials>, Status> {
    let (mut username, mut password) = (a.username, a.password);
    if !a.auth.is_empty() {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|_| Status::invalid_argument("auth.auth is not base64"))?;
        let text = String::from_utf8(raw)
            .map_err(|_| Status::invalid_argument("auth.auth is not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("auth.auth is not user:password"))?;
        (username, password) = (u.to_string(), p.to_string());
    }
    if !a.registry_token.is_empty() {
        return Err(Status::invalid_argument(
            "auth.registry_token is not supported by silo (use username and password, or identity_token)",
        ));
    }
    if username.is_empty() && password.is_empty() && a.identity_token.is_empty() {
        return Ok(None);
    }
    Ok(Some(silo_engine::Credentials {
        username,
        password,
        identity_token: Some(a.identity_token).filter(|t| !t.is_empty()),
    }))
}

/// The image filesystem: the bytes of the images on record, the inodes
/// in use on the filesystem that holds them.
fn fs_usage(engine: &Engine, path: &std::path::Path) -> cri::FilesystemUsage {
    let inodes = statvfs_inodes(path).unwrap_or(0);
    cri::FilesystemUsage {
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: path.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(cri::UInt64Value {
            value: engine.images().iter().map(|i| i.size).sum(),
        }),
        inodes_used: Some(cri::UInt64Value { value: inodes }),
    }
}

/// Inodes in use on the filesystem holding `path`.
fn statvfs_inodes(path: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_files.saturating_sub(st.f_ffree))
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> R<cri::ListImagesResponse> {
        let wanted = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let engine = self.engine.clone();
        let pause_image = self.pause_image.clone();
        blocking(move || {
            let images = match &wanted {
                Some(name) => engine.image(name).map(|i| vec![i]).unwrap_or_default(),
                None => engine.images(),
            };
            let pause = engine.image(&pause_image).ok().map(|i| i.id);
            Ok(cri::ListImagesResponse {
                images: images
                    .iter()
                    .map(|i| to_image(i, pause.as_deref() == Some(i.id.as_str())))
                    .collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> R<cri::ImageStatusResponse> {
        let req = req.into_inner();
        let name = image_name(req.image)?;
        let engine = self.engine.clone();
        let pause_image = self.pause_image.clone();
        blocking(move || {
            // A missing image is an empty answer, not an error (the kubelet
            // asks before it pulls).
            let Ok(img) = engine.image(&name) else {
                return Ok(cri::ImageStatusResponse::default());
            };
            let mut info = HashMap::new();
            if req.verbose {
                info.insert(
                    "info".to_string(),
                    serde_json::json!({
                        "id": img.id,
                        "created": img.created,
                        "diffIds": img.diff_ids,
                        "config": img.config,
                    })
                    .to_string(),
                );
            }
            let pinned = engine.image(&pause_image).is_ok_and(|p| p.id == img.id);
            Ok(cri::ImageStatusResponse {
                image: Some(to_image(&img, pinned)),
                info,
            })
        })
        .await
        .map(Response::new)
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> R<cri::PullImageResponse> {
        let req = req.into_inner();
        let name = image_name(req.image)?;
        let credentials = credentials(req.auth.unwrap_or_default())?;
        let engine = self.engine.clone();
        blocking(move || {
            let img = engine
                .pull(
                    &silo_engine::TransferRequest {
                        reference: name,
                        credentials,
                        platform: None,
                    },
                    &|_| {},
                )
                .map_err(status)?;
            Ok(cri::PullImageResponse { image_ref: img.id })
        })
        .await
        .map(Response::new)
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> R<cri::RemoveImageResponse> {
        let name = image_name(req.into_inner().image)?;
        let engine = self.engine.clone();
        blocking(move || {
            let Ok(img) = engine.image(&name) else {
                // Idempotent, as the CRI asks.
                return Ok(());
            };
            // The CRI removes the image itself, with every tag it has.
            match engine.remove_image(&img.id, true) {
                Ok(_) | Err(silo_engine::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(status(e)),
            }
        })
        .await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> R<cri::ImageFsInfoResponse> {
        let engine = self.engine.clone();
        blocking(move || {
            let root = engine.config().data_root.clone();
            Ok(cri::ImageFsInfoResponse {
                image_filesystems: vec![fs_usage(&engine, &root)],
                container_filesystems: vec![],
            })
        })
        .await
        .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_decoded_and_bad_auth_named() {
        let c = credentials(cri::AuthConfig {
            auth: "dXNlcjpwYXNz".into(),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
        assert!(credentials(cri::AuthConfig::default()).unwrap().is_none());
        let e = credentials(cri::AuthConfig {
            auth: "!!".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message().contains("base64"), "{e:?}");
    }

    #[test]
    fn image_user_is_a_uid_or_a_name() {
        let mut i = silo_storage::Image {
            id: "sha256:ab".into(),
            repo_tags: vec![],
            created: String::new(),
            size: 3,
            config: Default::default(),
            diff_ids: vec![],
            repo_digests: vec![],
        };
        i.config.config.user = Some("1000:1000".into());
        assert_eq!(to_image(&i, false).uid.unwrap().value, 1000);
        i.config.config.user = Some("nobody".into());
        let c = to_image(&i, true);
        assert!(c.pinned);
        assert!(c.uid.is_none());
        assert_eq!(c.username, "nobody");
    }
}
