//! Exec, attach and port-forward sessions over SPDY/3.1, the way the
//! kubelet's streaming server holds them (kubectl's SPDY client and the
//! API server's proxy expect exactly this): the client opens one stream
//! per channel, named by its `streamtype` header, the server takes each
//! with a SYN_REPLY; the remote-command protocols (`v4`, `v3`, `v2
//! .channel.k8s.io`) end with the status on the error stream, and
//! `portforward.k8s.io` pairs a data and an error stream per connection
//! by their `requestid`.

use crate::spdy::{self, Deflater, Frame, Inflater, SynStream};
use crate::streaming::{self, Input, Output, Pending};
use silo_engine::Engine;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The remote-command protocols, best first.
pub(crate) const REMOTE_COMMAND: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
/// The port-forward protocol.
pub(crate) const PORT_FORWARD: &[&str] = &["portforward.k8s.io"];

/// How long a client has to open the streams its command needs (the
/// kubelet's default).
const STREAM_WAIT: Duration = Duration::from_secs(30);
/// At most this many forwarded connections open at once in a session.
const MAX_PAIRS: usize = 512;
/// WINDOW_UPDATE once this much has been read (SPDY/3.1's windows start
/// at 64 KiB).
const WINDOW_STEP: u32 = 32 << 10;
/// At most this many streams' windows are kept.
const MAX_WINDOWS: usize = 1024;
/// A port-forward request id longer than this is refused.
const MAX_REQUEST_ID: usize = 64;
/// A port-forward session with no connection and no word from the client
/// for this long ends (the kubelet's default stream idle timeout).
const IDLE: Duration = Duration::from_secs(4 * 3600);
/// How long the server waits for the client to hang up once all is sent.
const LINGER: Duration = Duration::from_secs(5);

/// What the frame reader passes on.
enum Event {
    Syn(SynStream),
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    Reset(u32),
    /// The client hung up, or broke the protocol (why: the session's
    /// owner answers with a GOAWAY, after what it has sent already).
    End(Option<String>),
}

/// Reads frames on a task of its own (a frame read is not cancel-safe),
/// inflating every header block in order, answering pings and opening
/// the client's windows as data is read.
fn reader<R: AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    tx: mpsc::Sender<Vec<u8>>,
) -> (mpsc::Receiver<Event>, tokio::task::JoinHandle<()>) {
    let (ev_tx, ev_rx) = mpsc::channel::<Event>(64);
    let task = tokio::spawn(async move {
        let mut codec = Inflater::default();
        // What has been read of the session (0) and of each stream the
        // client opened (at most MAX_WINDOWS of them; the rest go without
        // updates, which only a strict client would miss).
        let mut unacked: HashMap<u32, u32> = HashMap::from([(0, 0)]);
        let end = loop {
            let f = match spdy::read_frame(&mut r).await {
                Ok(Some(f)) => f,
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            };
            let ev = match f {
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    for id in [0, stream] {
                        if let Some(n) = unacked.get_mut(&id) {
                            *n += data.len() as u32;
                            if *n >= WINDOW_STEP {
                                let _ = tx.send(spdy::window_update(id, *n)).await;
                                *n = 0;
                            }
                        }
                    }
                    if flags & spdy::FLAG_FIN != 0 && stream != 0 {
                        unacked.remove(&stream);
                    }
                    Event::Data {
                        stream,
                        fin: flags & spdy::FLAG_FIN != 0,
                        data,
                    }
                }
                Frame::Control {
                    kind,
                    flags,
                    payload,
                } => match kind {
                    spdy::SYN_STREAM => match SynStream::parse(flags, &payload, &mut codec) {
                        Ok(s) => {
                            if s.stream != 0 && unacked.len() <= MAX_WINDOWS {
                                unacked.entry(s.stream).or_insert(0);
                            }
                            Event::Syn(s)
                        }
                        Err(e) => break Some(e.to_string()),
                    },
                    // Their header blocks keep the zlib stream in step.
                    spdy::SYN_REPLY | spdy::HEADERS => {
                        let block = payload.get(4..).unwrap_or_default();
                        if let Err(e) = codec.decode(block) {
                            break Some(e.to_string());
                        }
                        continue;
                    }
                    spdy::RST_STREAM => match spdy::stream_of(&payload) {
                        Ok(id) => {
                            if id != 0 {
                                unacked.remove(&id);
                            }
                            Event::Reset(id)
                        }
                        Err(e) => break Some(e.to_string()),
                    },
                    spdy::PING => {
                        if payload.len() != 4 {
                            break Some("a PING of other than 4 bytes".into());
                        }
                        let _ = tx.send(spdy::control(spdy::PING, 0, &payload)).await;
                        continue;
                    }
                    // No new streams: those open go on, to the client's
                    // hang-up.
                    spdy::GOAWAY => continue,
                    // SETTINGS, WINDOW_UPDATE (the server does not hold its
                    // output to the client's windows, as the kubelet does
                    // not), and what a later version may add.
                    _ => continue,
                },
            };
            if ev_tx.send(ev).await.is_err() {
                return;
            }
        };
        let _ = ev_tx.send(Event::End(end)).await;
    });
    (ev_rx, task)
}

/// A GOAWAY with PROTOCOL_ERROR if the client broke the protocol.
async fn broken(why: &Option<String>, last: u32, tx: &mpsc::Sender<Vec<u8>>) {
    if let Some(why) = why {
        tracing::info!("SPDY session broken: {why}");
        let _ = tx
            .send(spdy::goaway(last, spdy::GOAWAY_PROTOCOL_ERROR))
            .await;
    }
}

/// Takes the streams the client opens (with a SYN_REPLY), or refuses
/// them (with a RST_STREAM).
struct Taker {
    codec: Deflater,
    last: u32,
}

impl Taker {
    fn new() -> Taker {
        Taker {
            codec: Deflater::default(),
            last: 0,
        }
    }

    async fn take(&mut self, s: &SynStream, tx: &mpsc::Sender<Vec<u8>>) -> bool {
        // Client streams are odd and rise.
        if s.stream.is_multiple_of(2) || s.stream <= self.last {
            self.refuse(s.stream, "a stream id out of order", tx).await;
            return false;
        }
        self.last = s.stream;
        match spdy::syn_reply(s.stream, &mut self.codec) {
            Ok(f) => tx.send(f).await.is_ok(),
            Err(e) => {
                tracing::warn!("SPDY reply: {e}");
                false
            }
        }
    }

    async fn refuse(&mut self, stream: u32, why: &str, tx: &mpsc::Sender<Vec<u8>>) {
        self.reset(stream, spdy::PROTOCOL_ERROR, why, tx).await;
    }

    async fn reset(&mut self, stream: u32, status: u32, why: &str, tx: &mpsc::Sender<Vec<u8>>) {
        tracing::info!("SPDY stream {stream} refused: {why}");
        let _ = tx.send(spdy::rst_stream(stream, status)).await;
    }
}

/// The streams a command's client must open before it starts.
fn wanted(pending: &Pending, protocol: &str) -> Vec<&'static str> {
    let (tty, stdin, stdout, stderr) = match pending {
        Pending::Exec {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        }
        | Pending::Attach {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        } => (*tty, *stdin, *stdout, *stderr),
        Pending::PortForward { .. } => (false, false, false, false),
    };
    let mut w = vec!["error"];
    for (on, name) in [
        (stdin, "stdin"),
        (stdout, "stdout"),
        (stderr && !tty, "stderr"),
        (tty && protocol != "v2.channel.k8s.io", "resize"),
    ] {
        if on {
            w.push(name);
        }
    }
    w
}

/// The status the error stream carries at the end: v4's metav1.Status,
/// or (v2, v3) the failure's message alone and nothing on success.
fn final_status(protocol: &str, ended: &Result<Option<i64>, String>) -> Vec<u8> {
    let v4 = protocol == "v4.channel.k8s.io";
    match ended {
        Ok(code) if v4 => streaming::exit_status(*code).into_bytes(),
        Ok(None | Some(0)) => Vec::new(),
        Ok(Some(c)) => {
            format!("command terminated with non-zero exit code: exit status {c}").into_bytes()
        }
        Err(e) if v4 => streaming::failure(e).into_bytes(),
        Err(e) => e.clone().into_bytes(),
    }
}

/// Passes a client's input on to its command. Before the command starts
/// nothing reads the queue, so input then is only what the queue holds: a
/// client that sends more before opening its streams is cut off (an await
/// would hang the session). Once it runs, a process slow to read holds the
/// client back, as the kubelet's does. None: the client is gone.
async fn deliver(
    to: &Option<mpsc::Sender<Input>>,
    inputs: Vec<Input>,
    started: bool,
) -> Result<(), String> {
    let Some(to) = to else { return Ok(()) };
    for i in inputs {
        if started {
            // An error here means the command has ended: nothing to feed.
            let _ = to.send(i).await;
        } else if let Err(mpsc::error::TrySendError::Full(_)) = to.try_send(i) {
            return Err("the client sent more input than it may before opening its streams".into());
        }
    }
    Ok(())
}

/// The terminal sizes in `buf`, a run of JSON objects split anywhere: the
/// whole ones are taken out, a partial one is kept (up to 4 KiB), and
/// garbage is dropped.
fn sizes(buf: &mut Vec<u8>) -> Vec<streaming::Size> {
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<streaming::Size>();
    let (mut out, mut used, mut bad) = (Vec::new(), 0, false);
    loop {
        match it.next() {
            Some(Ok(s)) => {
                out.push(s);
                used = it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                bad = true;
                break;
            }
            None => {
                used = it.byte_offset();
                break;
            }
        }
    }
    if bad || buf.len() - used > 4096 {
        buf.clear();
    } else {
        buf.drain(..used);
    }
    out
}

/// Sends `d` on `stream` in frames of at most 32 KiB.
async fn send_data(tx: &mpsc::Sender<Vec<u8>>, stream: u32, d: &[u8]) -> bool {
    for chunk in d.chunks(32 << 10) {
        if tx.send(spdy::data(stream, 0, chunk)).await.is_err() {
            return false;
        }
    }
    true
}

/// Waits (a little) for the client to hang up, then lets the writer end.
async fn linger(
    mut events: mpsc::Receiver<Event>,
    reader: tokio::task::JoinHandle<()>,
    tx: mpsc::Sender<Vec<u8>>,
    write_task: tokio::task::JoinHandle<()>,
) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(e) = events.recv().await {
            if matches!(e, Event::End(_)) {
                break;
            }
        }
    })
    .await;
    reader.abort();
    drop(tx);
    let _ = write_task.await;
}

/// An exec or attach over SPDY, speaking `protocol` (one of
/// [`REMOTE_COMMAND`]).
pub(crate) async fn remote_command<IO: AsyncRead + AsyncWrite + Send + 'static>(
    io: IO,
    engine: Arc<Engine>,
    pending: Pending,
    protocol: &'static str,
) -> Result<(), String> {
    let (r, w) = tokio::io::split(io);
    let (tx, write_task) = streaming::writer(w);
    let (mut events, reader_task) = reader(r, tx.clone());
    let want = wanted(&pending, protocol);
    let mut taker = Taker::new();
    let mut ids: HashMap<&'static str, u32> = HashMap::new();
    let (in_tx, in_rx) = mpsc::channel::<Input>(64);
    let mut in_tx = Some(in_tx);
    let (out_tx, out_rx) = mpsc::channel::<Output>(64);
    let mut start = Some((pending, in_rx, out_tx, out_rx));
    let mut command: Option<tokio::task::JoinHandle<Result<Option<i64>, String>>> = None;
    let mut forward: Option<tokio::task::JoinHandle<()>> = None;
    let mut resize = Vec::new();
    let mut hung_up = false;
    let deadline = tokio::time::sleep(STREAM_WAIT);
    tokio::pin!(deadline);
    let ended: Result<Option<i64>, String> = loop {
        tokio::select! {
            ev = events.recv(), if !hung_up => match ev.unwrap_or(Event::End(None)) {
                Event::Syn(s) => {
                    let kind = spdy::header(&s.headers, "streamtype").unwrap_or_default();
                    let Some(kind) = ["error", "stdin", "stdout", "stderr", "resize"]
                        .into_iter()
                        .find(|k| *k == kind)
                    else {
                        taker.refuse(s.stream, &format!("stream type {kind:?}"), &tx).await;
                        continue;
                    };
                    if ids.contains_key(kind) {
                        taker.refuse(s.stream, &format!("a second {kind} stream"), &tx).await;
                        continue;
                    }
                    if !taker.take(&s, &tx).await {
                        continue;
                    }
                    ids.insert(kind, s.stream);
                    if kind == "stdin" && s.flags & spdy::FLAG_FIN != 0 {
                        if let Err(e) = deliver(&in_tx, vec![Input::CloseStdin], command.is_some()).await {
                            break Err(e);
                        }
                    }
                    if command.is_none() && want.iter().all(|k| ids.contains_key(k)) {
                        let Some((pending, in_rx, out, mut out_rx)) = start.take() else { continue };
                        command = Some(tokio::spawn(streaming::run_command(
                            engine.clone(), pending, in_rx, out,
                        )));
                        let (stdout, stderr) = (ids.get("stdout").copied(), ids.get("stderr").copied());
                        let ftx = tx.clone();
                        forward = Some(tokio::spawn(async move {
                            while let Some(o) = out_rx.recv().await {
                                let (id, d) = match o {
                                    Output::Stdout(d) => (stdout, d),
                                    Output::Stderr(d) => (stderr.or(stdout), d),
                                };
                                if let Some(id) = id {
                                    if !send_data(&ftx, id, &d).await {
                                        break;
                                    }
                                }
                            }
                        }));
                    }
                }
                Event::Data { stream, fin, data } => {
                    let kind = ids.iter().find(|(_, id)| **id == stream).map(|(k, _)| *k);
                    let mut inputs = Vec::new();
                    match kind {
                        Some("stdin") => {
                            if !data.is_empty() {
                                inputs.push(Input::Stdin(data));
                            }
                            if fin {
                                inputs.push(Input::CloseStdin);
                            }
                        }
                        Some("resize") => {
                            resize.extend_from_slice(&data);
                            inputs.extend(sizes(&mut resize).into_iter().map(|s| Input::Resize {
                                width: s.width,
                                height: s.height,
                            }));
                        }
                        _ => {}
                    }
                    if let Err(e) = deliver(&in_tx, inputs, command.is_some()).await {
                        break Err(e);
                    }
                }
                Event::Reset(stream) => {
                    if ids.get("stdin") == Some(&stream) {
                        if let Err(e) = deliver(&in_tx, vec![Input::CloseStdin], command.is_some()).await {
                            break Err(e);
                        }
                    }
                }
                Event::End(why) => {
                    broken(&why, taker.last, &tx).await;
                    // The command, if any, sees its client gone.
                    hung_up = true;
                    in_tx = None;
                    if command.is_none() {
                        break Err(why.unwrap_or_else(|| "the client hung up before opening its streams".into()));
                    }
                }
            },
            () = &mut deadline, if command.is_none() => {
                let missing: Vec<&str> = want.iter().filter(|k| !ids.contains_key(*k)).copied().collect();
                break Err(format!("timed out waiting for the client's {} stream(s)", missing.join(", ")));
            }
            r = async { command.as_mut().expect("guarded").await }, if command.is_some() => {
                break r.unwrap_or_else(|e| Err(e.to_string()));
            }
        }
    };
    drop(in_tx);
    drop(start);
    if let Some(f) = forward {
        let _ = f.await;
    }
    if !hung_up {
        if let Some(&err) = ids.get("error") {
            let status = final_status(protocol, &ended);
            send_data(&tx, err, &status).await;
        }
        let mut open: Vec<u32> = ids.values().copied().collect();
        open.sort_unstable();
        for id in open {
            let _ = tx.send(spdy::data(id, spdy::FLAG_FIN, &[])).await;
        }
        let _ = tx.send(spdy::goaway(taker.last, spdy::GOAWAY_OK)).await;
        linger(events, reader_task, tx, write_task).await;
    } else {
        reader_task.abort();
        drop(tx);
        let _ = write_task.await;
    }
    ended.map(|_| ())
}

/// One forwarded connection's two streams.
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
    /// The client's data, queued from the data stream's opening to the
    /// connection's start.
    feed: Option<mpsc::Receiver<Vec<u8>>>,
    since: std::time::Instant,
}

impl Pair {
    /// Both streams are open: its connection has been started.
    fn complete(&self) -> bool {
        self.error.is_some() && self.data.is_some()
    }
}

/// How long one connection's pod side may refuse the client's data
/// before that connection is cut (the whole session waits meanwhile).
const STALL: Duration = Duration::from_secs(60);

/// Port forwarding over SPDY: every pair of streams with one `requestid`
/// (an error stream, then a data stream, both naming the `port`) is one
/// TCP connection to that port inside the pod.
pub(crate) async fn port_forward<IO: AsyncRead + AsyncWrite + Send + 'static>(
    io: IO,
    engine: Arc<Engine>,
    pod: String,
    allowed: Vec<i32>,
) -> Result<(), String> {
    let (r, w) = tokio::io::split(io);
    let (tx, write_task) = streaming::writer(w);
    let (mut events, reader_task) = reader(r, tx.clone());
    let mut taker = Taker::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut feeds: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut conns = tokio::task::JoinSet::new();
    let why = loop {
        let ev = match tokio::time::timeout(IDLE, events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => break None,
            Err(_) if conns.is_empty() => {
                tracing::info!("SPDY port forward idle for {IDLE:?}: ended");
                let _ = tx.send(spdy::goaway(taker.last, spdy::GOAWAY_OK)).await;
                break None;
            }
            Err(_) => continue,
        };
        match ev {
            Event::Syn(s) => {
                // Pairs that never completed are given up after a while.
                let stale: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| !p.complete() && p.since.elapsed() > STREAM_WAIT)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in stale {
                    if let Some(p) = pairs.remove(&k) {
                        for id in [p.error, p.data].into_iter().flatten() {
                            feeds.remove(&id);
                            let _ = tx.send(spdy::rst_stream(id, spdy::CANCEL)).await;
                        }
                    }
                }
                let kind = spdy::header(&s.headers, "streamtype").unwrap_or_default();
                let port = spdy::header(&s.headers, "port").unwrap_or_default();
                let Some(port) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
                    taker
                        .refuse(
                            s.stream,
                            &format!("port {port:?} is not a port number"),
                            &tx,
                        )
                        .await;
                    continue;
                };
                // Older clients leave requestid out: the data stream
                // then follows its error stream.
                let request = match (spdy::header(&s.headers, "requestid"), kind) {
                    (Some(r), _) => r.to_string(),
                    (None, "error") => s.stream.to_string(),
                    (None, _) => s.stream.saturating_sub(2).to_string(),
                };
                if !matches!(kind, "error" | "data") || request.len() > MAX_REQUEST_ID {
                    taker
                        .refuse(
                            s.stream,
                            &format!("stream type {kind:?}, request id {request:?}"),
                            &tx,
                        )
                        .await;
                    continue;
                }
                if !pairs.contains_key(&request) && pairs.len() >= MAX_PAIRS {
                    taker
                        .reset(
                            s.stream,
                            spdy::REFUSED_STREAM,
                            &format!("{MAX_PAIRS} connections open"),
                            &tx,
                        )
                        .await;
                    continue;
                }
                let pair = pairs.entry(request.clone()).or_insert_with(|| Pair {
                    port,
                    error: None,
                    data: None,
                    feed: None,
                    since: std::time::Instant::now(),
                });
                let slot = if kind == "error" {
                    &mut pair.error
                } else {
                    &mut pair.data
                };
                if slot.is_some() || pair.port != port {
                    taker
                        .refuse(
                            s.stream,
                            &format!(
                                "a second {kind} stream for request {request}, or another port"
                            ),
                            &tx,
                        )
                        .await;
                    continue;
                }
                if !taker.take(&s, &tx).await {
                    continue;
                }
                *slot = Some(s.stream);
                if kind == "data" {
                    let (feed_tx, feed_rx) = mpsc::channel::<Vec<u8>>(64);
                    // A data stream opened with FIN sends nothing.
                    if s.flags & spdy::FLAG_FIN == 0 {
                        feeds.insert(s.stream, feed_tx);
                    }
                    pair.feed = Some(feed_rx);
                }
                // The stream that completes the pair starts its connection
                // (a second stream of either kind was refused above).
                let complete = pair.complete();
                if let (Some(err), Some(data), Some(feed)) =
                    (pair.error, pair.data, pair.feed.take_if(|_| complete))
                {
                    let f = forward(
                        engine.clone(),
                        pod.clone(),
                        allowed.clone(),
                        port,
                        (data, err),
                        feed,
                        tx.clone(),
                    );
                    conns.spawn(async move {
                        f.await;
                        (request, data)
                    });
                }
            }
            Event::Data { stream, fin, data } => {
                if let Some(f) = feeds.get(&stream) {
                    // Data waits for the pod's side to take it (as the
                    // kubelet's does: SPDY as Kubernetes speaks it has no
                    // working flow control), but not forever.
                    if !data.is_empty() {
                        match tokio::time::timeout(STALL, f.send(data)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => {
                                feeds.remove(&stream);
                            }
                            Err(_) => {
                                tracing::info!("SPDY port forward: stream {stream}'s pod side took nothing for {STALL:?}: cut");
                                feeds.remove(&stream);
                                let _ = tx.send(spdy::rst_stream(stream, spdy::CANCEL)).await;
                            }
                        }
                    }
                }
                if fin {
                    // The client sends no more: the pod's side reads EOF.
                    feeds.remove(&stream);
                }
            }
            Event::Reset(stream) => {
                feeds.remove(&stream);
            }
            Event::End(why) => {
                broken(&why, taker.last, &tx).await;
                break why;
            }
        }
        // Forget the connections that are over.
        while let Some(done) = conns.try_join_next() {
            if let Ok((request, data)) = done {
                pairs.remove(&request);
                feeds.remove(&data);
            }
        }
    };
    conns.abort_all();
    reader_task.abort();
    drop(tx);
    let _ = write_task.await;
    why.map_or(Ok(()), Err)
}

/// One forwarded connection: the client's data to the pod's port, the
/// port's back, and any failure on the error stream; both streams end
/// when the pod's side does.
async fn forward(
    engine: Arc<Engine>,
    pod: String,
    allowed: Vec<i32>,
    port: u16,
    (data, err): (u32, u32),
    mut feed: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let conn = if !allowed.is_empty() && !allowed.contains(&i32::from(port)) {
        Err(format!("port {port} was not asked for in PortForward"))
    } else {
        streaming::blocking(move || streaming::connect_in_pod(&engine, &pod, port)).await
    };
    match conn {
        Err(msg) => {
            send_data(&tx, err, msg.as_bytes()).await;
        }
        Ok(conn) => {
            let (mut r, mut w) = conn.into_split();
            let up = async move {
                while let Some(d) = feed.recv().await {
                    if w.write_all(&d).await.is_err() {
                        break;
                    }
                }
                let _ = w.shutdown().await;
            };
            let down = async {
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send(spdy::data(data, 0, &buf[..n])).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            // The pod's end closing ends the connection; the client's
            // side may still be sending (it learns from the FIN).
            tokio::select! {
                () = down => {}
                () = async { up.await; std::future::pending::<()>().await } => {}
            }
        }
    }
    let _ = tx.send(spdy::data(data, spdy::FLAG_FIN, &[])).await;
    let _ = tx.send(spdy::data(err, spdy::FLAG_FIN, &[])).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(tty: bool, stdin: bool) -> Pending {
        Pending::Exec {
            container: "c".into(),
            cmd: vec![],
            tty,
            stdin,
            stdout: true,
            stderr: true,
        }
    }

    #[test]
    fn the_streams_a_command_waits_for() {
        assert_eq!(
            wanted(&exec(false, true), REMOTE_COMMAND[0]),
            ["error", "stdin", "stdout", "stderr"]
        );
        // A terminal merges stderr and resizes (from v3 on).
        assert_eq!(
            wanted(&exec(true, false), "v3.channel.k8s.io"),
            ["error", "stdout", "resize"]
        );
        assert_eq!(
            wanted(&exec(true, false), "v2.channel.k8s.io"),
            ["error", "stdout"]
        );
    }

    #[test]
    fn resizes_split_anywhere() {
        let mut buf = br#"{"Width":80,"Height":24}{"Wid"#.to_vec();
        let got = sizes(&mut buf);
        assert_eq!((got.len(), got[0].width, got[0].height), (1, 80, 24));
        assert_eq!(buf, br#"{"Wid"#);
        buf.extend_from_slice(br#"th":100,"Height":40}"#);
        let got = sizes(&mut buf);
        assert_eq!((got[0].width, got[0].height), (100, 40));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"]garbage");
        assert!(sizes(&mut buf).is_empty() && buf.is_empty());
    }

    #[test]
    fn statuses_by_protocol() {
        let v4 = |r: Result<Option<i64>, String>| {
            String::from_utf8(final_status("v4.channel.k8s.io", &r)).unwrap()
        };
        assert!(v4(Ok(Some(0))).contains("Success"));
        assert!(v4(Ok(Some(7))).contains(r#""message":"7""#));
        assert!(v4(Err("no such file".into())).contains("no such file"));
        let v3 = |r: Result<Option<i64>, String>| {
            String::from_utf8(final_status("v3.channel.k8s.io", &r)).unwrap()
        };
        assert_eq!(v3(Ok(Some(0))), "");
        assert!(v3(Ok(Some(7))).ends_with("exit status 7"));
    }
}
