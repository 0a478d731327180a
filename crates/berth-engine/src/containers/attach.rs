//! The attach protocol between a monitor and its clients (`run`,
//! `start -a`, `attach`): frames of `[kind u8][len u32 BE][payload]` on a
//! unix stream socket. Output and events flow from the monitor; stdin,
//! its end, and window sizes flow to it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

pub(crate) const HELLO: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const EVENT: u8 = 3;
pub(crate) const STDIN: u8 = 4;
pub(crate) const STDIN_EOF: u8 = 5;
pub(crate) const RESIZE: u8 = 6;

/// Larger frames are refused: a client cannot make the monitor allocate
/// without bound.
pub(crate) const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// The process runs.
    Started { pid: i32 },
    /// It ended with this code (128+N for signal N); sent after the
    /// monitor has recorded it (and removed the container for `--rm`).
    Exit { code: i32 },
    /// It could not start. `code` is Docker's: 125 engine, 126 not
    /// executable, 127 not found.
    Error { message: String, code: i32 },
}

#[derive(Debug, PartialEq)]
pub enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Event(Event),
}

pub(crate) fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub(crate) fn encode_event(e: &Event) -> Vec<u8> {
    encode(EVENT, &serde_json::to_vec(e).expect("event serialises"))
}

/// Whether `buf` starts with a whole frame.
pub(crate) fn has_frame(buf: &[u8]) -> bool {
    buf.len() >= 5 && buf.len() >= 5 + u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize
}

/// Splits one complete frame off the front of `buf`.
pub(crate) fn take_frame(buf: &mut Vec<u8>) -> io::Result<Option<(u8, Vec<u8>)>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "attach frame too large",
        ));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let kind = buf[0];
    let payload = buf[5..5 + len].to_vec();
    buf.drain(..5 + len);
    Ok(Some((kind, payload)))
}

/// The client end of an attach connection.
pub struct Attached {
    sock: UnixStream,
    buf: Vec<u8>,
}

impl Attached {
    pub(crate) fn new(sock: UnixStream, opts: AttachOptions) -> io::Result<Attached> {
        let mut a = Attached {
            sock,
            buf: Vec::new(),
        };
        a.send(HELLO, &serde_json::to_vec(&opts).expect("serialises"))?;
        Ok(a)
    }

    /// A second handle for writing stdin from another thread.
    pub fn writer(&self) -> io::Result<AttachWriter> {
        Ok(AttachWriter(self.sock.try_clone()?))
    }

    fn send(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        self.sock.write_all(&encode(kind, payload))
    }

    /// The next frame; `None` when the monitor hung up.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some((kind, payload)) = take_frame(&mut self.buf)? {
                return Ok(Some(match kind {
                    STDOUT => Frame::Stdout(payload),
                    STDERR => Frame::Stderr(payload),
                    EVENT => Frame::Event(
                        serde_json::from_slice(&payload)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                    ),
                    _ => continue,
                }));
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = match self.sock.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Writes stdin and window sizes to the monitor.
pub struct AttachWriter(UnixStream);

impl AttachWriter {
    pub fn stdin(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(MAX_FRAME) {
            self.0.write_all(&encode(STDIN, chunk))?;
        }
        Ok(())
    }

    pub fn close_stdin(&mut self) -> io::Result<()> {
        self.0.write_all(&encode(STDIN_EOF, &[]))
    }

    pub fn resize(&mut self, size: TtySize) -> io::Result<()> {
        self.0.write_all(&encode(
            RESIZE,
            &serde_json::to_vec(&size).expect("serialises"),
        ))
    }

    /// Stops reading: the monitor sees the client leave.
    pub fn detach(&mut self) -> io::Result<()> {
        self.0.shutdown(std::net::Shutdown::Both)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_any_boundary() {
        let mut wire = encode(STDOUT, b"hello");
        wire.extend(encode_event(&Event::Exit { code: 3 }));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(f) = take_frame(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got[0], (STDOUT, b"hello".to_vec()));
        assert_eq!(got[1].0, EVENT);
        let mut huge = vec![STDIN];
        huge.extend(u32::MAX.to_be_bytes());
        assert!(take_frame(&mut huge).is_err());
    }
}
