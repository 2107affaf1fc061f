//! SPDY/3.1 framing, because the kubelet passes `kubectl exec`, `attach`
//! and `port-forward` on to the runtime's streaming URL as SPDY: frame
//! encoding and reading, and the header blocks, which each direction
//! compresses with one zlib stream per session primed with SPDY/3's
//! dictionary. One definition, used by the server and the tests.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;

/// The last frame the sender sends on a stream.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM statuses.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;
pub const CANCEL: u32 = 5;
/// GOAWAY statuses.
pub const GOAWAY_OK: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// A frame's payload larger than this is refused (the format allows 16
/// MiB; a hostile peer cannot make us allocate that).
pub const MAX_FRAME: usize = 1 << 20;
/// Nor may a header block inflate past this.
pub const MAX_HEADERS: usize = 64 << 10;

/// What breaks a session.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("reading the SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("a SPDY frame of {0} bytes (at most {MAX_FRAME})")]
    TooLarge(usize),
    #[error("SPDY version {0} (this server speaks 3)")]
    Version(u16),
    #[error("a malformed SPDY frame: {0}")]
    Malformed(&'static str),
    #[error("a SPDY header block: {0}")]
    Headers(String),
}

/// One frame as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
    Control {
        kind: u16,
        flags: u8,
        payload: Vec<u8>,
    },
}

/// The next frame; None when the peer has closed between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut head[1..]).await?;
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(SpdyError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if first & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream: first,
            flags,
            data: payload,
        }));
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    Ok(Some(Frame::Control {
        kind: (first & 0xffff) as u16,
        flags,
        payload,
    }))
}

fn frame(first: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&first.to_be_bytes());
    let len = payload.len() as u32;
    out.extend_from_slice(&(u32::from(flags) << 24 | len).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A data frame (its payload at most [`MAX_FRAME`]).
pub fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(stream & 0x7fff_ffff, flags, payload)
}

/// A control frame.
pub fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(
        0x8000_0000 | u32::from(VERSION) << 16 | u32::from(kind),
        flags,
        payload,
    )
}

/// RST_STREAM: `stream` is refused or cut with `status`.
pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut p = stream.to_be_bytes().to_vec();
    p.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &p)
}

/// GOAWAY: no stream after `last` will be taken.
pub fn goaway(last: u32, status: u32) -> Vec<u8> {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&status.to_be_bytes());
    control(GOAWAY, 0, &p)
}

/// WINDOW_UPDATE: the peer may send `delta` more bytes on `stream` (0: on
/// the session, as SPDY/3.1 adds).
pub fn window_update(stream: u32, delta: u32) -> Vec<u8> {
    let mut p = stream.to_be_bytes().to_vec();
    p.extend_from_slice(&delta.to_be_bytes());
    control(WINDOW_UPDATE, 0, &p)
}

/// The first 31-bit word of a control frame's payload (the stream of
/// SYN_REPLY, RST_STREAM, HEADERS and WINDOW_UPDATE).
pub fn stream_of(payload: &[u8]) -> Result<u32, SpdyError> {
    let w: [u8; 4] =
        payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(SpdyError::Malformed(
                "a control frame too short for its stream id",
            ))?;
    Ok(u32::from_be_bytes(w) & 0x7fff_ffff)
}

/// The preset dictionary of SPDY/3's header compression (its spec,
/// section 2.6.10.1): the common header names and words, each after its
/// 32-bit length, then a run of common status codes and values. Built
/// from that description; its Adler-32 is 0xe3c6a7c2, which a test pins.
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &[&str] = &[
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        ];
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        for t in TAIL {
            d.extend_from_slice(t.as_bytes());
        }
        d
    })
}

/// Name/value pairs, names lowercase, as SPDY carries them.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name`.
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.split('\0').next().unwrap_or_default())
}

/// The reading half of a session's header compression: one zlib stream
/// for every block the peer sends.
pub struct Inflater {
    z: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            z: Decompress::new(true),
        }
    }
}

/// The writing half: one zlib stream for every block sent, flushed at the
/// end of each. Its window is the smallest zlib has (512 bytes, so about
/// 8 KiB of state a session instead of about 256): what silo sends is
/// small, and a peer's inflater reads any window.
pub struct Deflater {
    z: Compress,
    primed: bool,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            z: Compress::new_with_window_bits(Compression::default(), true, 9),
            primed: false,
        }
    }
}

fn take_u32(b: &mut &[u8]) -> Result<u32, SpdyError> {
    let (w, rest) = b
        .split_first_chunk::<4>()
        .ok_or_else(|| SpdyError::Headers("truncated".into()))?;
    *b = rest;
    Ok(u32::from_be_bytes(*w))
}

fn take_str(b: &mut &[u8]) -> Result<String, SpdyError> {
    let n = take_u32(b)? as usize;
    if n > b.len() {
        return Err(SpdyError::Headers("a length past its end".into()));
    }
    let (s, rest) = b.split_at(n);
    *b = rest;
    String::from_utf8(s.to_vec()).map_err(|_| SpdyError::Headers("not UTF-8".into()))
}

impl Inflater {
    /// The pairs of one compressed block (the rest of a SYN_STREAM,
    /// SYN_REPLY or HEADERS frame).
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(256);
        let mut input = block;
        loop {
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            if out.capacity() - out.len() < 256 {
                out.reserve(out.len().max(1024));
            }
            let st = match self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(st) => st,
                Err(e) if e.needs_dictionary().is_some() => {
                    let used = (self.z.total_in() - before_in) as usize;
                    input = &input[used..];
                    self.z
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Headers(format!("the dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Headers(format!("inflating: {e}"))),
            };
            input = &input[(self.z.total_in() - before_in) as usize..];
            if out.len() > MAX_HEADERS {
                return Err(SpdyError::Headers(format!(
                    "more than {MAX_HEADERS} bytes inflated"
                )));
            }
            let stuck = self.z.total_in() == before_in && self.z.total_out() == before_out;
            if st == Status::StreamEnd || (stuck && !input.is_empty()) {
                return Err(SpdyError::Headers(
                    "the compressed stream ended or stalled".into(),
                ));
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        let mut b = out.as_slice();
        let n = take_u32(&mut b)?;
        let mut h = Vec::new();
        for _ in 0..n {
            let name = take_str(&mut b)?;
            let value = take_str(&mut b)?;
            if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
                return Err(SpdyError::Headers(format!(
                    "header name {name:?} is empty or not lowercase"
                )));
            }
            h.push((name, value));
        }
        if !b.is_empty() {
            return Err(SpdyError::Headers("bytes after the last pair".into()));
        }
        Ok(h)
    }
}

impl Deflater {
    /// A compressed block of `pairs` (names lowercased).
    pub fn encode(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
        if !self.primed {
            self.z
                .set_dictionary(dictionary())
                .map_err(|e| SpdyError::Headers(format!("the dictionary: {e}")))?;
            self.primed = true;
        }
        let mut raw = (pairs.len() as u32).to_be_bytes().to_vec();
        for (n, v) in pairs {
            for s in [n.to_ascii_lowercase().as_str(), v] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = raw.as_slice();
        loop {
            let before = self.z.total_in();
            out.reserve(64 + input.len());
            let st = self
                .z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Headers(format!("deflating: {e}")))?;
            input = &input[(self.z.total_in() - before) as usize..];
            // Done once all is in and the flush fit in what was left.
            if input.is_empty() && out.len() < out.capacity() && st != Status::BufError {
                break;
            }
        }
        Ok(out)
    }
}

/// A parsed SYN_STREAM.
#[derive(Debug)]
pub struct SynStream {
    pub stream: u32,
    pub flags: u8,
    pub headers: Headers,
}

impl SynStream {
    pub fn parse(flags: u8, payload: &[u8], codec: &mut Inflater) -> Result<Self, SpdyError> {
        if payload.len() < 10 {
            return Err(SpdyError::Malformed("a SYN_STREAM shorter than 10 bytes"));
        }
        let stream = stream_of(payload)?;
        let headers = codec.decode(&payload[10..])?;
        Ok(SynStream {
            stream,
            flags,
            headers,
        })
    }

    /// The frame (priority 0), as a client sends it.
    pub fn encode(&self, codec: &mut Deflater) -> Result<Vec<u8>, SpdyError> {
        let mut p = self.stream.to_be_bytes().to_vec();
        p.extend_from_slice(&[0; 6]);
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        p.extend(codec.encode(&pairs)?);
        Ok(control(SYN_STREAM, self.flags, &p))
    }
}

/// A SYN_REPLY with no headers: the stream is taken.
pub fn syn_reply(stream: u32, codec: &mut Deflater) -> Result<Vec<u8>, SpdyError> {
    let mut p = stream.to_be_bytes().to_vec();
    p.extend(codec.encode(&[])?);
    Ok(control(SYN_REPLY, 0, &p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_specs() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // Adler-32, computed here so the test needs nothing else.
        let (mut a, mut b) = (1u32, 0u32);
        for &x in d {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(b << 16 | a, 0xe3c6_a7c2);
    }

    #[test]
    fn header_blocks_round_trip_across_one_session() {
        let (mut tx, mut rx) = (Deflater::default(), Inflater::default());
        for i in 0..50 {
            let v = format!("value {i} {}", "x".repeat(i * 40));
            let block = tx
                .encode(&[("streamType", "stdout"), ("port", &v)])
                .unwrap();
            // The first block names SPDY's dictionary (FDICT, its id).
            if i == 0 {
                assert_eq!(block[1] & 0x20, 0x20);
                assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
            }
            let h = rx.decode(&block).unwrap();
            assert_eq!(header(&h, "streamtype"), Some("stdout"));
            assert_eq!(header(&h, "port"), Some(v.as_str()));
        }
    }

    #[test]
    fn hostile_blocks_are_refused() {
        let mut rx = Inflater::default();
        assert!(rx.decode(b"not zlib at all").is_err());
        // A block that claims more pairs than it has, and one with an
        // upper-case name.
        for raw in [
            [&5u32.to_be_bytes()[..], &1u32.to_be_bytes(), b"a"].concat(),
            [
                &1u32.to_be_bytes()[..],
                &4u32.to_be_bytes(),
                b"Port",
                &1u32.to_be_bytes(),
                b"1",
            ]
            .concat(),
        ] {
            let mut c = Compress::new(Compression::default(), true);
            c.set_dictionary(dictionary()).unwrap();
            let mut z = Vec::with_capacity(256);
            c.compress_vec(&raw, &mut z, FlushCompress::Sync).unwrap();
            assert!(matches!(
                Inflater::default().decode(&z),
                Err(SpdyError::Headers(_))
            ));
        }
        // No pairs at all is fine.
        let z = Deflater::default().encode(&[]).unwrap();
        assert!(Inflater::default().decode(&z).unwrap().is_empty());
        // A bomb: zeros that inflate past the cap.
        let mut c = Compress::new(Compression::best(), true);
        let zeros = vec![0u8; MAX_HEADERS * 4];
        let mut z = Vec::with_capacity(MAX_HEADERS);
        c.compress_vec(&zeros, &mut z, FlushCompress::Sync).unwrap();
        assert!(Inflater::default().decode(&z).is_err());
    }

    #[tokio::test]
    async fn frames_read_back_and_oversized_ones_are_refused() {
        let mut bytes = data(5, FLAG_FIN, b"hello");
        bytes.extend(rst_stream(7, PROTOCOL_ERROR));
        bytes.extend(goaway(9, GOAWAY_OK));
        let mut r = bytes.as_slice();
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some(Frame::Data {
                stream: 5,
                flags: FLAG_FIN,
                data: b"hello".to_vec()
            })
        );
        let Some(Frame::Control { kind, payload, .. }) = read_frame(&mut r).await.unwrap() else {
            panic!("want a control frame");
        };
        assert_eq!((kind, stream_of(&payload).unwrap()), (RST_STREAM, 7));
        assert!(matches!(
            read_frame(&mut r).await.unwrap(),
            Some(Frame::Control { kind: GOAWAY, .. })
        ));
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        let mut big = 1u32.to_be_bytes().to_vec();
        big.extend_from_slice(&(0x00ff_ffffu32).to_be_bytes());
        assert!(matches!(
            read_frame(&mut big.as_slice()).await,
            Err(SpdyError::TooLarge(_))
        ));
        let mut v2 = (0x8002_0001u32).to_be_bytes().to_vec();
        v2.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(
            read_frame(&mut v2.as_slice()).await,
            Err(SpdyError::Version(2))
        ));
    }
}
