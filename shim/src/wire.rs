//! ttrpc framing over a non-blocking unix socket: a 10-byte header
//! (length, stream id, type, flags; big endian) then a protobuf body. The
//! shim's loop reads what is there, splits whole frames off, and queues
//! its writes, so that no peer can block it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

const HEADER: usize = 10;
/// ttrpc's limit on a message body.
const MAX_BODY: usize = 4 << 20;
pub const REQUEST: u8 = 1;
pub const RESPONSE: u8 = 2;

pub struct Frame {
    pub stream: u32,
    pub kind: u8,
    pub body: Vec<u8>,
}

/// One peer: containerd calling the Task API, or containerd's event
/// service the shim calls.
pub struct Conn {
    pub sock: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl Conn {
    pub fn new(sock: UnixStream) -> std::io::Result<Conn> {
        sock.set_nonblocking(true)?;
        Ok(Conn {
            sock,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
        })
    }

    /// Reads what is available; whole frames go to `frames`. False once
    /// the connection is done: EOF, a socket error, or a frame over
    /// ttrpc's limit.
    pub fn read(&mut self, frames: &mut Vec<Frame>) -> bool {
        let mut chunk = [0u8; 8192];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        while self.rbuf.len() >= HEADER {
            let h = &self.rbuf[..HEADER];
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len > MAX_BODY {
                return false;
            }
            if self.rbuf.len() < HEADER + len {
                break;
            }
            let stream = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            let kind = h[8];
            let body = self.rbuf[HEADER..HEADER + len].to_vec();
            self.rbuf.drain(..HEADER + len);
            frames.push(Frame { stream, kind, body });
        }
        if self.rbuf.is_empty() {
            // An idle connection keeps no buffer.
            self.rbuf = Vec::new();
        }
        true
    }

    /// Queues a frame and writes what the socket takes.
    pub fn send(&mut self, stream: u32, kind: u8, body: &[u8]) -> std::io::Result<()> {
        self.wbuf
            .extend_from_slice(&(body.len() as u32).to_be_bytes());
        self.wbuf.extend_from_slice(&stream.to_be_bytes());
        self.wbuf.extend_from_slice(&[kind, 0]);
        self.wbuf.extend_from_slice(body);
        self.flush()
    }

    /// Writes queued bytes until the socket would block.
    pub fn flush(&mut self) -> std::io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.sock.write(&self.wbuf) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf = Vec::new();
        Ok(())
    }

    /// Whether writes wait for the socket.
    pub fn pending(&self) -> bool {
        !self.wbuf.is_empty()
    }
}
