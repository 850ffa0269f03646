//! Events to containerd, sent by one thread in the order they were queued
//! (the runtime v2 contract is about order; a slow containerd must not
//! stall the ttrpc threads).

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use std::sync::mpsc;
use std::time::Duration;

enum Cmd {
    Event(String, Box<dyn MessageDyn + Send>),
    Flush(mpsc::Sender<()>),
}

#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Cmd>,
}

impl Events {
    /// Starts the sending thread.
    pub fn start(publisher: RemotePublisher, namespace: String) -> std::io::Result<Events> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                for cmd in rx {
                    match cmd {
                        Cmd::Event(topic, event) => {
                            if let Err(e) =
                                publisher.publish(Context::default(), &topic, &namespace, event)
                            {
                                log::error!("publish {topic}: {e}");
                            }
                        }
                        Cmd::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Events { tx })
    }

    pub fn publish<E: Event + Send + 'static>(&self, event: E) {
        let _ = self.tx.send(Cmd::Event(event.topic(), Box::new(event)));
    }

    /// Waits (a little) until the events queued so far are sent.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Cmd::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }
}
