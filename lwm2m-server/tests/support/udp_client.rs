//! A scripted CoAP client on a real UDP socket (lwm2m-core's endpoint pumped
//! by a tokio task): sends what the test asks and answers what a server asks,
//! either with a handler or, for bootstrap, with success while handing each
//! request to the test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How long the client waits for an answer.
const WAIT: Duration = Duration::from_secs(20);

type Reply = oneshot::Sender<Option<Response>>;

/// A running client.
pub struct UdpClient {
    requests: mpsc::Sender<(SocketAddr, Request, Reply)>,
    /// Requests from a server, for a client made with [`UdpClient::recording`].
    incoming: mpsc::UnboundedReceiver<Request>,
    /// The client's own address.
    pub addr: SocketAddr,
}

impl UdpClient {
    /// A client that answers a server's requests with `handler`.
    pub async fn spawn(seed: u64, handler: fn(&Request) -> Response) -> UdpClient {
        // Nothing is forwarded: the sender goes right away.
        let (_, in_rx) = mpsc::unbounded_channel();
        UdpClient::start(seed, in_rx, move |request| handler(&request)).await
    }

    /// A client that answers a server's requests with success (Deleted for
    /// DELETE, Changed otherwise) and hands them to the test.
    pub async fn recording(seed: u64) -> UdpClient {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        UdpClient::start(seed, in_rx, move |request: Request| {
            let code = match request.code {
                Code::DELETE => Code::DELETED,
                _ => Code::CHANGED,
            };
            let _ = in_tx.send(request);
            Response::new(code)
        })
        .await
    }

    async fn start(
        seed: u64,
        incoming: mpsc::UnboundedReceiver<Request>,
        mut answer: impl FnMut(Request) -> Response + Send + 'static,
    ) -> UdpClient {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel::<(SocketAddr, Request, Reply)>(16);
        tokio::spawn(async move {
            let mut ep: Endpoint<SocketAddr, SplitMix64> =
                Endpoint::new(EndpointConfig::default(), SplitMix64::new(seed));
            let origin = tokio::time::Instant::now();
            let now = || Instant::from_millis(origin.elapsed().as_millis() as u64);
            let mut waiting: HashMap<_, Reply> = HashMap::new();
            let mut buf = vec![0u8; 65_535];
            loop {
                while let Some(t) = ep.poll_transmit() {
                    let _ = sock.send_to(&t.bytes, t.peer).await;
                }
                let deadline = ep
                    .poll_timeout()
                    .map(|t| origin + Duration::from_millis(t.as_millis()));
                tokio::select! {
                    r = sock.recv_from(&mut buf) => {
                        if let Ok((n, peer)) = r {
                            ep.handle_datagram(now(), peer, &buf[..n]);
                        }
                    }
                    m = rx.recv() => match m {
                        Some((to, req, reply)) => {
                            let id = ep.send_request(now(), to, req).unwrap();
                            waiting.insert(id, reply);
                        }
                        None => break,
                    },
                    () = async {
                        match deadline {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    } => ep.handle_timeout(now()),
                }
                while let Some(ev) = ep.poll_event() {
                    match ev {
                        Event::Response { id, response } => {
                            if let Some(r) = waiting.remove(&id) {
                                let _ = r.send(Some(response));
                            }
                        }
                        Event::RequestFailed { id, .. } => {
                            if let Some(r) = waiting.remove(&id) {
                                let _ = r.send(None);
                            }
                        }
                        Event::Request { id, request, .. } => {
                            let response = answer(request);
                            ep.respond(now(), id, response);
                        }
                        _ => {}
                    }
                }
            }
        });
        UdpClient {
            requests: tx,
            incoming,
            addr,
        }
    }

    /// Sends `req` to `to` and waits for the answer.
    pub async fn send(&self, to: SocketAddr, req: Request) -> Response {
        let (reply, rx) = oneshot::channel();
        self.requests.send((to, req, reply)).await.unwrap();
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("answer in time")
            .unwrap()
            .expect("exchange completed")
    }

    /// The requests a [`UdpClient::recording`] client got from servers
    /// so far and not taken yet.
    pub fn received(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        while let Ok(r) = self.incoming.try_recv() {
            out.push(r);
        }
        out
    }

    /// Requests the server sent until (and including) Bootstrap-Finish.
    pub async fn until_finish(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        loop {
            let r = tokio::time::timeout(WAIT, self.incoming.recv())
                .await
                .expect("bootstrap request in time")
                .expect("client running");
            let finish = r.code == Code::POST && r.path() == "/bs";
            out.push(r);
            if finish {
                return out;
            }
        }
    }
}
