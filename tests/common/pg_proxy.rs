//! A loopback TCP proxy in front of PostgreSQL that can break sessions the
//! ways real networks do, while the server under test talks through it:
//! - cut a session right after it sent `COMMIT`, before the answer comes back
//!   (a failover or a proxy reset: the client cannot know whether it committed);
//! - freeze the sessions that sent `LISTEN`: both sockets stay open and
//!   nothing passes either way any more (a host gone without a word, a NAT
//!   that forgot the connection: no error ever reaches the client);
//! - close the sessions that sent `LISTEN`, and hold each new `LISTEN` for a
//!   while (a pooler restart, `pg_terminate_backend`, a slow failover);
//! - drop every notification on its way to the client while the session
//!   itself goes on answering (a notification that never arrives, without
//!   any sign that the listener is unwell).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct PgProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// The next `COMMIT` of any session is passed on, and its session cut.
    cut_next_commit: AtomicBool,
    /// Sessions cut that way.
    cuts: AtomicUsize,
    /// The sessions that sent `LISTEN`.
    listeners: Mutex<Vec<Arc<Session>>>,
    /// How long each `LISTEN` is held before it is passed on.
    listen_delay: Mutex<std::time::Duration>,
    /// Each session freezes as it sends `LISTEN`, which never arrives.
    freeze_at_listen: AtomicBool,
    /// Notifications (`NotificationResponse`) are dropped, not passed on.
    mute_notifications: AtomicBool,
}

#[derive(Default)]
struct Session {
    frozen: AtomicBool,
    closed: CancellationToken,
}

impl PgProxy {
    /// Listens on a free loopback port and relays every session to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> PgProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let (upstream, s) = (upstream.to_owned(), shared.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                tokio::spawn(relay(client, server, s.clone()));
            }
        });
        PgProxy { port, shared }
    }

    /// `database_url` with its host and port replaced by this proxy's.
    pub fn url_for(&self, database_url: &str) -> String {
        let (head, rest) = database_url.split_once('@').unwrap();
        let (_, db) = rest.split_once('/').unwrap();
        let db = db.split('?').next().unwrap();
        format!("{head}@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    pub fn cut_next_commit(&self) {
        self.shared.cut_next_commit.store(true, Ordering::SeqCst);
    }

    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Sessions that have sent `LISTEN` so far.
    pub fn listeners(&self) -> usize {
        self.shared.listeners.lock().unwrap().len()
    }

    /// Freezes every session that has sent `LISTEN` so far and returns how
    /// many were not frozen yet; sessions opened later pass normally.
    pub fn freeze_listeners(&self) -> usize {
        let listeners = self.shared.listeners.lock().unwrap();
        listeners.iter().filter(|l| !l.frozen.swap(true, Ordering::SeqCst)).count()
    }

    /// Closes every session that has sent `LISTEN` so far, both ways.
    pub fn close_listeners(&self) {
        for l in self.shared.listeners.lock().unwrap().iter() {
            l.closed.cancel();
        }
    }

    /// From now on (or no longer), each session freezes as it sends `LISTEN`:
    /// the connection dies silently while the client waits for the answer.
    pub fn freeze_at_listen(&self, on: bool) {
        self.shared.freeze_at_listen.store(on, Ordering::SeqCst);
    }

    /// From now on, drops every notification on its way to a client; the
    /// sessions go on answering everything else.
    pub fn mute_notifications(&self) {
        self.shared.mute_notifications.store(true, Ordering::SeqCst);
    }

    /// Holds each `LISTEN` from now on for `delay` before passing it on.
    pub fn delay_listen(&self, delay: std::time::Duration) {
        *self.shared.listen_delay.lock().unwrap() = delay;
    }
}

/// `host:port` of a `postgres://user:pass@host:port/db` URL.
pub fn upstream_of(database_url: &str) -> &str {
    let (_, rest) = database_url.split_once('@').unwrap();
    rest.split_once('/').unwrap().0
}

/// Copies both ways; reads the client's side message by message (after the
/// untyped startup message, each is a type byte and a length).
async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let session = Arc::new(Session::default());
    let (mut from_client, to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let (s, sh) = (session.clone(), shared.clone());
    let answers = tokio::spawn(async move {
        let mut to_client = to_client;
        let mut buf = vec![0u8; 64 * 1024];
        let mut stream = ServerStream::default();
        loop {
            let n = tokio::select! {
                n = from_server.read(&mut buf) => match n { Ok(n) => n, Err(_) => break },
                () = s.closed.cancelled() => break,
            };
            if s.frozen.load(Ordering::SeqCst) {
                // Hold both halves: the client sees neither data nor an end.
                return std::future::pending::<()>().await;
            }
            let out = stream.pass(&buf[..n], sh.mute_notifications.load(Ordering::SeqCst));
            if n == 0 || to_client.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let closed = session.closed.clone();
    tokio::select! {
        () = forward_client(&mut from_client, &mut to_server, &shared, &session, &answers) => {}
        () = closed.cancelled() => {}
    }
    answers.abort();
}

/// The server's side of a session, split into messages so that
/// notifications can be dropped. Every message is a type byte and a length
/// (the proxy's URLs say `sslmode=disable`, so no one-byte SSL answer comes
/// first).
#[derive(Default)]
struct ServerStream {
    pending: Vec<u8>,
}

impl ServerStream {
    /// What of `data` (after anything held back) goes on to the client.
    fn pass(&mut self, data: &[u8], mute: bool) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if rest.len() < 5 {
                break;
            }
            let len = 1 + u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            if rest.len() < len {
                break;
            }
            if !(mute && rest[0] == b'A') {
                out.extend_from_slice(&rest[..len]);
            }
            at += len;
        }
        self.pending.drain(..at);
        out
    }
}

async fn forward_client(
    from_client: &mut tokio::net::tcp::OwnedReadHalf,
    to_server: &mut tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    session: &Arc<Session>,
    answers: &tokio::task::JoinHandle<()>,
) {
    let mut started = false;
    loop {
        let mut msg = Vec::new();
        let head_len = if started { 5 } else { 4 };
        let mut head = vec![0u8; head_len];
        if from_client.read_exact(&mut head).await.is_err() {
            return;
        }
        started = true;
        msg.extend_from_slice(&head);
        let len = u32::from_be_bytes(msg[msg.len() - 4..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        if from_client.read_exact(&mut body).await.is_err() {
            return;
        }
        msg.extend_from_slice(&body);
        if session.frozen.load(Ordering::SeqCst) {
            return std::future::pending::<()>().await;
        }
        let query = |word: &[u8]| msg[0] == b'Q' && body.to_ascii_uppercase().starts_with(word);
        if query(b"LISTEN") {
            shared.listeners.lock().unwrap().push(session.clone());
            if shared.freeze_at_listen.load(Ordering::SeqCst) {
                session.frozen.store(true, Ordering::SeqCst);
                return std::future::pending::<()>().await;
            }
            let delay = *shared.listen_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
        }
        if query(b"COMMIT") && shared.cut_next_commit.swap(false, Ordering::SeqCst) {
            // No answer reaches the client from here on.
            answers.abort();
            let _ = to_server.write_all(&msg).await;
            // Let the server run it before the session goes away.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if to_server.write_all(&msg).await.is_err() {
            return;
        }
    }
}
