//! The WebSocket framing (RFC 6455) the streaming server speaks, and the
//! small client the tests and tools use: one definition of the handshake
//! key, frame encoding and frame reading.

use base64::Engine as _;
use sha1::Digest as _;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OP_CONTINUATION: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// A message larger than this is refused (a hostile peer cannot make us
/// allocate more).
pub const MAX_MESSAGE: usize = 16 << 20;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = sha1::Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// One frame: FIN set, `opcode`, the payload (masked with `mask`, as a
/// client must).
pub fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A channel message of the Kubernetes stream protocols: the channel byte,
/// then the data.
pub fn channel_frame(channel: u8, data: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut p = Vec::with_capacity(data.len() + 1);
    p.push(channel);
    p.extend_from_slice(data);
    encode(OP_BINARY, &p, mask)
}

/// Reads messages (fragments joined; control frames as they come, also
/// between the fragments of a message, which is kept for the next call).
#[derive(Default)]
pub struct MessageReader {
    partial: Vec<u8>,
    op: Option<u8>,
}

impl MessageReader {
    /// The next message: (opcode, payload); None at the end of the stream.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            let mut head = [0u8; 2];
            match r.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.op.is_none() => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
            let fin = head[0] & 0x80 != 0;
            let op = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    r.read_exact(&mut b).await?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    r.read_exact(&mut b).await?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if len > MAX_MESSAGE as u64 || self.partial.len() + len as usize > MAX_MESSAGE {
                return Err(std::io::Error::other(format!(
                    "a WebSocket message of more than {MAX_MESSAGE} bytes"
                )));
            }
            let mut key = [0u8; 4];
            if masked {
                r.read_exact(&mut key).await?;
            }
            let mut payload = vec![0u8; len as usize];
            r.read_exact(&mut payload).await?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            if op >= OP_CLOSE {
                return Ok(Some((op, payload)));
            }
            match (self.op, op) {
                (None, OP_CONTINUATION) => {
                    return Err(std::io::Error::other(
                        "a WebSocket continuation without a start",
                    ))
                }
                (None, _) => self.op = Some(op),
                (Some(_), OP_CONTINUATION) => {}
                (Some(_), _) => {
                    return Err(std::io::Error::other(
                        "a new WebSocket message inside a fragmented one",
                    ))
                }
            }
            self.partial.extend_from_slice(&payload);
            if fin {
                let op = self.op.take().unwrap_or(OP_BINARY);
                return Ok(Some((op, std::mem::take(&mut self.partial))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_of_rfc_6455s_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn frames_round_trip_masked_and_fragmented() {
        let big = vec![7u8; 70_000];
        let mut wire = encode(OP_BINARY, b"hi", Some([1, 2, 3, 4]));
        wire.extend(encode(OP_BINARY, &big, None));
        // "ab" in two fragments with a ping between them.
        wire.extend([0x02, 0x01, b'a']);
        wire.extend(encode(OP_PING, b"p", None));
        wire.extend([0x80, 0x01, b'b']);
        let mut r = &wire[..];
        let mut m = MessageReader::default();
        assert_eq!(
            m.next(&mut r).await.unwrap(),
            Some((OP_BINARY, b"hi".to_vec()))
        );
        assert_eq!(m.next(&mut r).await.unwrap(), Some((OP_BINARY, big)));
        assert_eq!(
            m.next(&mut r).await.unwrap(),
            Some((OP_PING, b"p".to_vec()))
        );
        assert_eq!(
            m.next(&mut r).await.unwrap(),
            Some((OP_BINARY, b"ab".to_vec()))
        );
        assert_eq!(m.next(&mut r).await.unwrap(), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_oversized_message_is_refused() {
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
        let mut r = &wire[..];
        assert!(MessageReader::default().next(&mut r).await.is_err());
    }
}
