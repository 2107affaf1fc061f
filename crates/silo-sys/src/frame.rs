//! Docker's multiplexed stdio stream, spoken by the monitor's attach
//! socket, the engine's exec relay, the Engine API and the CLI: without a
//! TTY each chunk is preceded by an 8-byte header (stream, 0, 0, 0,
//! big-endian length); with one the bytes are raw.

use std::io::{self, Read, Write};

/// Length of a frame header.
pub const HEADER_LEN: usize = 8;

/// The stream byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

impl Stream {
    /// The stream for a header's first byte (anything but 2 is output, as
    /// Docker's clients read it).
    pub fn from_byte(b: u8) -> Stream {
        match b {
            0 => Stream::Stdin,
            2 => Stream::Stderr,
            _ => Stream::Stdout,
        }
    }
}

/// The header of a frame carrying `len` bytes of `stream`.
pub fn header(stream: Stream, len: usize) -> [u8; HEADER_LEN] {
    let n = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [stream as u8, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// A whole frame: header and payload.
pub fn frame(stream: Stream, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&header(stream, payload.len()));
    v.extend_from_slice(payload);
    v
}

/// Copies a multiplexed stream from `r`: stderr frames to `err`, the
/// others to `out`, flushing after each frame. Ends cleanly at EOF
/// between frames; EOF inside a frame is an error.
pub fn demux(mut r: impl Read, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
    let mut head = [0u8; HEADER_LEN];
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match read_full(&mut r, &mut head)? {
            0 => return Ok(()),
            HEADER_LEN => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame header",
                ))
            }
        }
        let mut left = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let dst: &mut dyn Write = if Stream::from_byte(head[0]) == Stream::Stderr {
            &mut *err
        } else {
            &mut *out
        };
        while left > 0 {
            let n = r.read(&mut buf[..left.min(32 * 1024)])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame",
                ));
            }
            dst.write_all(&buf[..n])?;
            left -= n;
        }
        dst.flush()?;
    }
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_demux() {
        assert_eq!(header(Stream::Stdout, 5), [1, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(
            header(Stream::Stderr, 0x0102_0304),
            [2, 0, 0, 0, 1, 2, 3, 4]
        );
        let mut wire = frame(Stream::Stdout, b"out");
        wire.extend(frame(Stream::Stderr, b"err"));
        wire.extend(frame(Stream::Stdout, b""));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        demux(&wire[..], &mut out, &mut err).unwrap();
        assert_eq!((&out[..], &err[..]), (&b"out"[..], &b"err"[..]));
        let cut = &wire[..wire.len() - 10];
        assert!(demux(cut, &mut Vec::new(), &mut Vec::new()).is_err());
    }
}
