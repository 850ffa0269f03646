//! Events to containerd (its ttrpc `Events.Forward`), in the order they
//! were queued: containerd serves the requests of a connection
//! concurrently, so the next event goes only once the previous one is
//! answered. Driven by the shim's loop; a slow containerd delays events,
//! never requests.

use crate::wire::{self, Conn};
use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc;
use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

pub struct Events {
    address: String,
    namespace: String,
    conn: Option<Conn>,
    /// Encoded ttrpc requests not yet answered; the first is in flight
    /// when `inflight` is set.
    queue: VecDeque<Vec<u8>>,
    inflight: Option<u32>,
    next_stream: u32,
}

impl Events {
    pub fn new(address: &str, namespace: String) -> Events {
        Events {
            address: address.strip_prefix("unix://").unwrap_or(address).into(),
            namespace,
            conn: None,
            queue: VecDeque::new(),
            inflight: None,
            next_stream: 1,
        }
    }

    pub fn publish<E: Event + Message>(&mut self, event: E) {
        match self.encode(&event) {
            Ok(req) => {
                self.queue.push_back(req);
                self.pump();
            }
            Err(e) => log::error!("encode event {}: {e}", event.topic()),
        }
    }

    fn encode<E: Event + Message>(&self, event: &E) -> anyhow::Result<Vec<u8>> {
        // The type URL by name, not through protobuf's reflection, which
        // would parse every descriptor of the file into the heap.
        let any = containerd_shim::protos::protobuf::well_known_types::any::Any {
            type_url: format!("containerd.events.{}", E::NAME),
            value: event.write_to_bytes()?,
            ..Default::default()
        };
        let topic = event.topic();
        let req = ForwardRequest {
            envelope: MessageField::some(Envelope {
                timestamp: MessageField::some(containerd_shim::util::timestamp()?),
                namespace: self.namespace.clone(),
                topic,
                event: MessageField::some(any),
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = ttrpc::Request {
            service: "containerd.services.events.ttrpc.v1.Events".into(),
            method: "Forward".into(),
            payload: req.write_to_bytes()?,
            timeout_nano: Duration::from_secs(10).as_nanos() as i64,
            ..Default::default()
        };
        Ok(call.write_to_bytes()?)
    }

    /// Sends the next event if none is in flight.
    fn pump(&mut self) {
        if self.inflight.is_some() {
            return;
        }
        let Some(req) = self.queue.front().cloned() else {
            return;
        };
        if self.conn.is_none() {
            match UnixStream::connect(&self.address).and_then(Conn::new) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    log::error!(
                        "connect {}: {e}; {} events dropped",
                        self.address,
                        self.queue.len()
                    );
                    self.queue.clear();
                    return;
                }
            }
        }
        let stream = self.next_stream;
        // Client streams are odd.
        self.next_stream = self.next_stream.wrapping_add(2);
        let sent = self
            .conn
            .as_mut()
            .map(|c| c.send(stream, wire::REQUEST, &req));
        match sent {
            Some(Ok(())) => self.inflight = Some(stream),
            Some(Err(e)) => self.reset(&format!("send: {e}")),
            None => {}
        }
    }

    /// The connection failed: the event in flight goes again on a new one.
    fn reset(&mut self, why: &str) {
        log::warn!("event connection: {why}");
        self.conn = None;
        if self.inflight.take().is_some() {
            // Retry once; an event containerd cannot take is dropped
            // rather than retried forever.
            self.pump();
        }
    }

    /// The fd to poll and for what: POLLOUT while writes wait.
    pub fn poll_fd(&self) -> Option<(BorrowedFd<'_>, bool)> {
        self.conn.as_ref().map(|c| (c.sock.as_fd(), c.pending()))
    }

    /// The socket is ready.
    pub fn ready(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Err(e) = conn.flush() {
            return self.reset(&format!("write: {e}"));
        }
        let mut frames = Vec::new();
        let open = conn.read(&mut frames);
        for f in frames {
            if f.kind != wire::RESPONSE || Some(f.stream) != self.inflight {
                continue;
            }
            self.inflight = None;
            self.queue.pop_front();
            if let Ok(resp) = ttrpc::Response::parse_from_bytes(&f.body) {
                if let Some(s) = resp.status.as_ref().filter(|s| s.code.value() != 0) {
                    log::warn!("containerd refused an event: {}", s.message);
                }
            }
        }
        if !open {
            return self.reset("closed by containerd");
        }
        self.pump();
    }

    /// Waits (up to 5 s) until every queued event is answered.
    pub fn flush(&mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = Instant::now() + Duration::from_secs(5);
        self.pump();
        while !self.queue.is_empty() && Instant::now() < deadline {
            let Some((fd, out)) = self.poll_fd() else {
                return;
            };
            let flags = if out {
                PollFlags::POLLIN | PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            let mut fds = [PollFd::new(fd, flags)];
            if matches!(poll(&mut fds, PollTimeout::from(100u16)), Ok(n) if n > 0) {
                self.ready();
            }
        }
    }
}
