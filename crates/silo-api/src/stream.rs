//! Bridges between the blocking engine and async HTTP bodies: running an
//! engine call on the blocking pool, a response body fed by a channel, and
//! `Read`/`Write` adapters over channels of byte chunks.

use crate::error::{ApiError, ApiResult};
use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use std::io::{self, Read, Write};
use tokio::sync::mpsc;

/// A chunk sent into a streaming response body.
pub type Chunk = Result<Bytes, io::Error>;

/// Runs a blocking adapter call on the blocking pool.
pub async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> silo_docker::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("engine task failed: {e}")))?
        .map_err(ApiError::Docker)
}

/// A response body whose chunks come from the returned sender. The body
/// ends when every sender is dropped; an `Err` chunk aborts it.
pub fn channel_body(capacity: usize) -> (mpsc::Sender<Chunk>, Body) {
    let (tx, rx) = mpsc::channel::<Chunk>(capacity);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (tx, Body::from_stream(stream))
}

/// Writes into a channel body from a blocking thread.
pub struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Chunk>) -> Self {
        ChannelWriter { tx }
    }

    /// Aborts the response (the client sees a truncated transfer).
    pub fn fail(&self, message: String) {
        let _ = self.tx.blocking_send(Err(io::Error::other(message)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a request body from a blocking thread; fed by [`feed_reader`].
pub struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl ChannelReader {
    /// Reads and drops what the client still sends, up to `limit` bytes, so
    /// an answer given before the whole body was read (a tar's trailing
    /// zero blocks and record padding, or a body refused early) does not
    /// meet a client still writing into a closed connection.
    pub fn drain(&mut self, limit: u64) {
        let _ = io::copy(&mut self.take(limit), &mut io::sink());
    }
}

/// What is drained of a request body after it was used (see
/// [`ChannelReader::drain`]): the padding of a tar archive is at most 10 KiB.
pub const DRAIN_LIMIT: u64 = 1 << 20;

/// Starts copying a request body into a [`ChannelReader`].
pub fn feed_reader(body: Body) -> ChannelReader {
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    tokio::spawn(async move {
        let mut data = body.into_data_stream();
        while let Some(item) = data.next().await {
            let chunk =
                item.map_err(|e| io::Error::other(format!("reading the request body: {e}")));
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    ChannelReader {
        rx,
        current: Bytes::new(),
    }
}

/// Runs a blocking transfer (pull, push) that reports progress as lines of
/// JSON, and answers the way dockerd does: a failure before the first line
/// is an HTTP error status; after it, the status is 200 and the failure is
/// the stream's last line (`errorDetail`).
pub async fn progress_stream<F>(run: F) -> ApiResult<axum::response::Response>
where
    F: FnOnce(&(dyn Fn(Vec<u8>) + Sync)) -> silo_docker::Result<()> + Send + 'static,
{
    let (tx, body) = channel_body(64);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<silo_docker::Result<()>>();
    let started = std::sync::Mutex::new(Some(started_tx));
    tokio::task::spawn_blocking(move || {
        let begin = |r: silo_docker::Result<()>| match started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(s) => {
                let _ = s.send(r);
                None
            }
            None => Some(r),
        };
        let emit = |line: Vec<u8>| {
            let _ = begin(Ok(()));
            // A client that went away does not stop the transfer (the
            // image is still wanted by the next try).
            let _ = tx.blocking_send(Ok(Bytes::from(line)));
        };
        let result = run(&emit);
        if let Some(Err(e)) = begin(result) {
            let message = ApiError::Docker(e).message();
            let _ = tx.blocking_send(Ok(Bytes::from(silo_docker::error_line(&message))));
        }
    });
    match started_rx.await {
        Ok(Err(e)) => Err(ApiError::Docker(e)),
        Err(_) => Err(ApiError::Internal("the transfer task died".to_string())),
        Ok(Ok(())) => {
            let mut resp = axum::response::Response::new(body);
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
    }
}

/// Docker's stream framing of one chunk ([`silo_sys::frame`]).
pub fn frame(stream: u8, bytes: &[u8]) -> Bytes {
    let stream = silo_sys::frame::Stream::from_byte(stream);
    Bytes::from(silo_sys::frame::frame(stream, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reader_and_writer_round_trip() {
        let (tx, body) = channel_body(4);
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter::new(tx);
            w.write_all(b"abc").unwrap();
            w.write_all(b"defg").unwrap();
        });
        let mut reader = feed_reader(body);
        let text = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            reader.read_to_string(&mut s).unwrap();
            s
        })
        .await
        .unwrap();
        writer.await.unwrap();
        assert_eq!(text, "abcdefg");
    }

    #[tokio::test]
    async fn blocking_maps_engine_errors() {
        let err = blocking(|| -> silo_docker::Result<()> {
            Err(silo_engine::Error::not_found(silo_engine::Kind::Container, "x").into())
        })
        .await
        .unwrap_err();
        assert_eq!(err.status().as_u16(), 404);
        assert_eq!(err.to_string(), "No such container: x");
    }
}
