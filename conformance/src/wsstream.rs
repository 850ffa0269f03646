//! A minimal client of the kubelet streaming protocol over WebSocket, as
//! containerd's CRI stream server serves it (the URLs `Exec`, `Attach`
//! and `PortForward` answer): RFC 6455 framing, one byte of channel before
//! each message's data (`v4.channel.k8s.io`: 0 stdin, 1 stdout, 2 stderr,
//! 3 the status as JSON). Enough for the CRI suite; no TLS, no fragments
//! sent, no extensions.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

pub struct WsConn {
    stream: TcpStream,
}

/// What a stream session delivered, by channel.
#[derive(Debug, Default)]
pub struct Streams {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The status message (channel 3), if any.
    pub status: String,
}

/// Opens a TCP connection to `addr` from the network namespace of
/// process `pid` (the stream server listens on that namespace's
/// loopback): a thread of our own enters it, connects and leaves.
pub fn connect_in_netns(pid: u32, addr: &str) -> Result<TcpStream> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("open the network namespace of {pid}"))?;
    let addr = addr.to_string();
    std::thread::spawn(move || -> Result<TcpStream> {
        // SAFETY: setns on a valid namespace fd, affecting this thread only
        // (which ends right after).
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        TcpStream::connect(&addr).with_context(|| format!("connect {addr}"))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?
}

impl WsConn {
    /// The WebSocket handshake for `url` (http://host:port/path?query) over
    /// `stream`, asking for `protocol`.
    pub fn handshake(mut stream: TcpStream, url: &str, protocol: &str) -> Result<WsConn> {
        let rest = url.strip_prefix("http://").context("not an http:// URL")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: a2VlbC1jcmktc3VpdGUxMg==\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        stream
            .write_all(req.as_bytes())
            .context("send the handshake")?;
        // The response head, byte by byte so no frame is read past it.
        let mut head = Vec::new();
        let mut b = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            stream
                .read_exact(&mut b)
                .context("read the handshake answer")?;
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        if !head.starts_with("HTTP/1.1 101") {
            bail!("no upgrade: {head}");
        }
        Ok(WsConn { stream })
    }

    /// Sends `data` on `channel` as one masked binary frame.
    pub fn send(&mut self, channel: u8, data: &[u8]) -> Result<()> {
        let len = data.len() + 1;
        let mut frame = vec![0x82u8];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        // A zero masking key: the payload goes as is.
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.push(channel);
        frame.extend_from_slice(data);
        self.stream.write_all(&frame).context("send a frame")
    }

    /// The next data message (channel, bytes), or None once the server
    /// closes the connection.
    pub fn recv(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        loop {
            let mut h = [0u8; 2];
            match self.stream.read_exact(&mut h) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e).context("read a frame"),
            }
            let opcode = h[0] & 0x0f;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut l = [0u8; 2];
                self.stream.read_exact(&mut l)?;
                len = u64::from(u16::from_be_bytes(l));
            } else if len == 127 {
                let mut l = [0u8; 8];
                self.stream.read_exact(&mut l)?;
                len = u64::from_be_bytes(l);
            }
            let mut mask = [0u8; 4];
            if h[1] & 0x80 != 0 {
                self.stream.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; usize::try_from(len)?];
            self.stream.read_exact(&mut payload)?;
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                8 => return Ok(None),
                1 | 2 if !payload.is_empty() => {
                    let channel = payload.remove(0);
                    return Ok(Some((channel, payload)));
                }
                // Pings, pongs and empty messages (a channel's opening).
                _ => continue,
            }
        }
    }

    /// Reads every message until the server closes: stdout, stderr and
    /// the status, as an `Exec` or `Attach` session ends.
    pub fn collect(mut self) -> Result<Streams> {
        let mut s = Streams::default();
        while let Some((channel, data)) = self.recv()? {
            match channel {
                1 => s.stdout.extend(data),
                2 => s.stderr.extend(data),
                3 => s.status.push_str(&String::from_utf8_lossy(&data)),
                _ => {}
            }
        }
        Ok(s)
    }
}
