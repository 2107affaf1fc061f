//! A CRI client on a unix socket (the tests' and bench/cri.sh's; the
//! kubelet brings its own).

use crate::proto::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use std::path::PathBuf;
use tonic::transport::Channel;

/// Both services over one connection.
#[derive(Clone)]
pub struct Client {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

/// Connects to the CRI socket at `path`.
pub async fn connect(path: impl Into<PathBuf>) -> Result<Client, tonic::transport::Error> {
    let path: PathBuf = path.into();
    // The URI is required by the API and unused: the connector dials the socket.
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await?;
    Ok(Client {
        runtime: RuntimeServiceClient::new(channel.clone()),
        image: ImageServiceClient::new(channel),
    })
}
