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

/// A WebSocket session on a streaming URL, speaking the channel protocol.
pub struct Stream {
    /// Buffered: the server may send right after its handshake.
    read: tokio::io::BufReader<tokio::io::ReadHalf<tokio::net::TcpStream>>,
    write: tokio::io::WriteHalf<tokio::net::TcpStream>,
    messages: crate::ws::MessageReader,
    /// The subprotocol the server chose.
    pub protocol: String,
}

type Reader = tokio::io::BufReader<tokio::io::ReadHalf<tokio::net::TcpStream>>;
type Writer = tokio::io::WriteHalf<tokio::net::TcpStream>;

/// Sends an upgrade request for `url` with `headers`: the reader, the
/// writer, and the answer's headers; Err carries a refusal's status and
/// body.
async fn upgrade(url: &str, headers: &str) -> Result<(Reader, Writer, Vec<String>), String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not an http:// URL"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let tcp = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("{host}: {e}"))?;
    let (read, mut write) = tokio::io::split(tcp);
    let request =
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n{headers}\r\n");
    write
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = tokio::io::BufReader::new(read);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("the server closed the connection".into());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let status = head.first().cloned().unwrap_or_default();
    if !status.contains(" 101 ") {
        // The refusal's body (the connection stays open: read no further).
        let len: usize = find(&head, "content-length").parse().unwrap_or(0);
        let mut body = vec![0u8; len.min(64 * 1024)];
        let _ = tokio::io::AsyncReadExt::read_exact(&mut reader, &mut body).await;
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok((reader, write, head))
}

/// Header `name`'s value in an answer's head.
fn find(head: &[String], name: &str) -> String {
    head.iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// Opens `url` (as Exec, Attach or PortForward returned it, plus any
/// query) offering `protocols`. Err carries the server's refusal.
pub async fn stream(url: &str, protocols: &[&str]) -> Result<Stream, String> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(
        silo_sys::id::random_id()
            .as_bytes()
            .get(..16)
            .unwrap_or_default(),
    );
    let (reader, write, head) = upgrade(
        url,
        &format!(
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ),
    )
    .await?;
    if find(&head, "sec-websocket-accept") != crate::ws::accept_key(&key) {
        return Err("the server's Sec-WebSocket-Accept does not match".into());
    }
    Ok(Stream {
        read: reader,
        write,
        messages: crate::ws::MessageReader::default(),
        protocol: find(&head, "sec-websocket-protocol"),
    })
}

/// A SPDY/3.1 session on a streaming URL, frame by frame (for tests that
/// need to send what kubectl would not).
pub struct Spdy {
    read: Reader,
    write: Writer,
    /// Inflates the server's header blocks; the other deflates ours.
    inflate: crate::spdy::Inflater,
    deflate: crate::spdy::Deflater,
    /// The protocol the server chose.
    pub protocol: String,
}

/// Opens `url` with a SPDY/3.1 upgrade offering `protocols` (as
/// `X-Stream-Protocol-Version`s, in order).
pub async fn spdy(url: &str, protocols: &[&str]) -> Result<Spdy, String> {
    let offers: String = protocols
        .iter()
        .map(|p| format!("X-Stream-Protocol-Version: {p}\r\n"))
        .collect();
    let (read, write, head) = upgrade(url, &format!("Upgrade: SPDY/3.1\r\n{offers}")).await?;
    Ok(Spdy {
        read,
        write,
        inflate: Default::default(),
        deflate: Default::default(),
        protocol: find(&head, "x-stream-protocol-version"),
    })
}

impl Spdy {
    /// Sends raw bytes (a frame, or not).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write.write_all(bytes).await
    }

    /// Opens stream `id` with `headers`.
    pub async fn open(&mut self, id: u32, headers: &[(&str, &str)]) -> std::io::Result<()> {
        let syn = crate::spdy::SynStream {
            stream: id,
            flags: 0,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        let f = syn
            .encode(&mut self.deflate)
            .map_err(std::io::Error::other)?;
        self.send_raw(&f).await
    }

    /// The next frame; a SYN_REPLY's or HEADERS' block is inflated (and
    /// dropped) to keep the session's zlib stream in step.
    pub async fn next(&mut self) -> std::io::Result<Option<crate::spdy::Frame>> {
        let f = crate::spdy::read_frame(&mut self.read)
            .await
            .map_err(std::io::Error::other)?;
        if let Some(crate::spdy::Frame::Control {
            kind: crate::spdy::SYN_REPLY | crate::spdy::HEADERS,
            payload,
            ..
        }) = &f
        {
            self.inflate
                .decode(payload.get(4..).unwrap_or_default())
                .map_err(std::io::Error::other)?;
        }
        Ok(f)
    }
}

impl Stream {
    /// Sends `data` on `channel` (masked, as a client must).
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mask: [u8; 4] = silo_sys::id::random_id()
            .as_bytes()
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([1, 2, 3, 4]);
        self.write
            .write_all(&crate::ws::channel_frame(channel, data, Some(mask)))
            .await
    }

    /// The next channel message; None once the server closes.
    pub async fn recv(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            match self.messages.next(&mut self.read).await? {
                None => return Ok(None),
                Some((crate::ws::OP_CLOSE, _)) => return Ok(None),
                Some((crate::ws::OP_BINARY, p)) if !p.is_empty() => {
                    return Ok(Some((p[0], p[1..].to_vec())))
                }
                Some(_) => {}
            }
        }
    }

    /// Everything until the server closes, by channel.
    pub async fn collect(&mut self) -> std::io::Result<std::collections::BTreeMap<u8, Vec<u8>>> {
        let mut out = std::collections::BTreeMap::<u8, Vec<u8>>::new();
        while let Some((ch, data)) = self.recv().await? {
            out.entry(ch).or_default().extend(data);
        }
        Ok(out)
    }
}
