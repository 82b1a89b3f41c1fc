//! Server-sent events (issue 13, items 1 and 4): ids per workspace, resume
//! with `Last-Event-ID` (replay or an explicit reset), streams that end and
//! free their slots, events relayed between two nodes over Redis, and Redis
//! that is down at start or goes away and comes back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::events::Event;

use crate::helpers::{
    poll_until, redis_available, redis_url, spawn_app_with, spawn_beside, Backend, TestApp,
};

/// One SSE frame: its `id:` (`Some("")` for an empty one), its `data:`
/// parsed as JSON, whether it carried a `retry:`; comment-only frames have
/// neither id nor data.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) id: Option<String>,
    pub(crate) data: Option<Value>,
    retry: bool,
    text: String,
}

/// An open event stream, read frame by frame.
pub(crate) struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(app: &TestApp, key: &str, last: Option<&str>) -> Sse {
        let mut req = app.client.get(app.url("/api/v1/events")).bearer_auth(key);
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        Sse::from_response(req.send().await.unwrap())
    }

    /// Reads the stream `res` answered (asserts it is 200).
    pub(crate) fn from_response(res: reqwest::Response) -> Sse {
        assert_eq!(res.status(), StatusCode::OK);
        Sse {
            res,
            buf: String::new(),
        }
    }

    /// The next frame, comments included; `None` when the server ended the
    /// stream. Fails after 30 s without one.
    async fn next_raw(&mut self) -> Option<Frame> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let text: String = self.buf.drain(..at + 2).collect();
                let mut frame = Frame {
                    id: None,
                    data: None,
                    retry: false,
                    text: text.clone(),
                };
                for line in text.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        frame.id = Some(id.trim_start().to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        frame.data = Some(serde_json::from_str(d).unwrap());
                    } else if line.starts_with("retry:") {
                        frame.retry = true;
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.res.chunk())
                .await
                .expect("a frame within 30 s")
                .expect("stream read");
            match chunk {
                Some(c) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                None => return None,
            }
        }
    }

    /// The next frame with data (skips `: ping` comments).
    pub(crate) async fn next(&mut self) -> Frame {
        loop {
            let frame = self.next_raw().await.expect("the stream ended");
            if frame.data.is_some() {
                return frame;
            }
        }
    }
}

fn ws_id(id: &str) -> WorkspaceId {
    WorkspaceId(id.parse().unwrap())
}

/// Publishes an event of `ws` on the node's engine bus, as the engine does
/// when trust changes.
fn publish(app: &TestApp, ws: &str, agent: &str) {
    app.engine.events().publish(Event::TrustUpdated {
        workspace_id: ws_id(ws),
        agents: vec![swarmwise_actors::domain::AgentId::parse("agent_id", agent).unwrap()],
    });
}

fn agent_of(frame: &Frame) -> String {
    frame.data.as_ref().unwrap()["agents"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

/// Events carry `id: <numbering>-<seq>`, numbered per workspace from 1; a
/// reconnect with `Last-Event-ID` replays the buffered events after it, then
/// continues live; an id older than the buffer, malformed, oversized or
/// from another numbering gets one `reset` event with an empty `id:`.
#[actix_web::test]
async fn ids_resume_and_reset() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.events.replay_buffer = 3).await;
    let (a_id, a) = app.workspace("A").await;
    let (b_id, _) = app.workspace("B").await;
    let mut live = Sse::open(&app, &a, None).await;
    for i in 1..=5 {
        publish(&app, &b_id, &format!("b{i}"));
        publish(&app, &a_id, &format!("a{i}"));
    }
    let mut ids = Vec::new();
    for i in 1..=5u64 {
        let f = live.next().await;
        assert_eq!(agent_of(&f), format!("a{i}"), "only A's events, in order");
        let id = f.id.unwrap();
        assert!(id.starts_with('l'), "local numbering without Redis: {id}");
        assert_eq!(
            seq_of(&id),
            i,
            "numbered per workspace: B's events do not count"
        );
        ids.push(id);
    }

    // Resume after a3: a4 and a5 replayed, then live again.
    let mut resumed = Sse::open(&app, &a, Some(&ids[2])).await;
    assert_eq!(agent_of(&resumed.next().await), "a4");
    assert_eq!(agent_of(&resumed.next().await), "a5");
    publish(&app, &a_id, "a6");
    let f = resumed.next().await;
    assert_eq!((agent_of(&f), seq_of(&f.id.unwrap())), ("a6".into(), 6));

    // The newest id: nothing to replay, the next event comes live.
    let mut current = Sse::open(&app, &a, Some(&format!("{}6", &ids[0][..ids[0].len() - 1]))).await;
    publish(&app, &a_id, "a7");
    assert_eq!(agent_of(&current.next().await), "a7");

    // Buffer of 3 holds a5..a7: resuming after a1 cannot be answered.
    let cases = [
        (ids[0].clone(), "expired"),
        ("not-an-id".into(), "unknown_last_event_id"),
        ("x".repeat(4000), "unknown_last_event_id"),
        ("r0123456789ab-3".into(), "unknown_last_event_id"),
        (
            format!("{}99", &ids[0][..ids[0].len() - 1]),
            "unknown_last_event_id",
        ),
    ];
    for (last, reason) in cases {
        let mut s = Sse::open(&app, &a, Some(&last)).await;
        let f = s.next().await;
        let data = f.data.unwrap();
        assert_eq!(data["type"], "reset", "{last:.40}");
        assert_eq!(data["reason"], reason, "{last:.40}");
        assert_eq!(data["workspace_id"], a_id.as_str());
        assert_eq!(
            f.id.as_deref(),
            Some(""),
            "a reset clears the client's last id"
        );
        publish(&app, &a_id, "after");
        assert_eq!(agent_of(&s.next().await), "after", "live after the reset");
    }
    drop((live, resumed, current));
    app.stop().await.unwrap();
}

/// Hostile: workspace X reconnects with ids taken from workspace Y's
/// stream. It gets its own events or a reset, never one of Y's.
#[actix_web::test]
async fn another_workspaces_ids_replay_nothing_of_theirs() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let (x_id, x) = app.workspace("X").await;
    let (y_id, y) = app.workspace("Y").await;
    let mut ys = Sse::open(&app, &y, None).await;
    for i in 1..=6 {
        publish(&app, &y_id, &format!("secret{i}"));
    }
    publish(&app, &x_id, "x1");
    publish(&app, &x_id, "x2");
    let mut y_ids = Vec::new();
    for _ in 1..=6 {
        y_ids.push(ys.next().await.id.unwrap());
    }
    for id in &y_ids {
        let mut s = Sse::open(&app, &x, Some(id)).await;
        publish(&app, &x_id, "marker");
        // Everything up to the marker: X's own events or a reset.
        loop {
            let f = s.next().await;
            let data = f.data.unwrap();
            assert_eq!(data["workspace_id"], x_id.as_str(), "{data}");
            assert!(!data.to_string().contains("secret"), "{data}");
            if data["agents"][0] == "marker" {
                break;
            }
        }
    }
    app.stop().await.unwrap();
}

/// Clients that go away from a quiet workspace free their slots of
/// `limits.max_event_streams_per_workspace`: the heartbeat's write notices
/// them. Asserted through the cap: all slots can be taken again.
#[actix_web::test]
async fn gone_clients_free_their_slots() {
    const N: usize = 20;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.events.heartbeat_secs = 1;
        s.limits.max_event_streams_per_workspace = N;
    })
    .await;
    let (_, a) = app.workspace("A").await;
    let mut open = Vec::new();
    for _ in 0..N {
        open.push(Sse::open(&app, &a, None).await);
    }
    let refused = app.get(&a, "/api/v1/events").await;
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the cap holds"
    );
    drop(open);
    poll_until("all stream slots freed after the clients left", || async {
        let mut taken = Vec::new();
        for _ in 0..N {
            let res = app.get(&a, "/api/v1/events").await;
            if res.status() != StatusCode::OK {
                return Err(format!("{} of {N} slots free", taken.len()));
            }
            taken.push(res);
        }
        Ok(())
    })
    .await;
    app.stop().await.unwrap();
}

/// A stream ends after `events.max_stream_secs` with a `retry:` hint, and
/// its slot is free again.
#[actix_web::test]
async fn streams_end_after_their_lifetime() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.events.max_stream_secs = 1;
        s.limits.max_event_streams_per_workspace = 1;
    })
    .await;
    let (a_id, a) = app.workspace("A").await;
    let mut s = Sse::open(&app, &a, None).await;
    publish(&app, &a_id, "a1");
    let first = s.next().await;
    let mut last = None;
    while let Some(f) = s.next_raw().await {
        last = Some(f);
    }
    let last = last.expect("a farewell frame");
    assert!(last.retry, "{}", last.text);
    assert!(last.text.contains("Last-Event-ID"), "{}", last.text);
    // The slot is free: a reconnect resumes after the last id.
    let again = Sse::open(&app, &a, first.id.as_deref()).await;
    drop(again);
    app.stop().await.unwrap();
}

/// Redis unreachable at start (a closed loopback port): the node starts,
/// is ready, says `redis: unavailable` with the error in `/readyz`, serves
/// patterns and cycle triggers from the database, and its streams work.
#[actix_web::test]
async fn starts_and_serves_with_redis_down() {
    let port = free_port();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.redis.url = format!("redis://127.0.0.1:{port}");
        s.redis.key_prefix = format!("test-down-{}:", uuid::Uuid::now_v7().simple());
    })
    .await;
    let ready = app.ready().await;
    assert_eq!(ready["redis"]["status"], "unavailable", "{ready}");
    assert!(
        ready["redis"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{ready}"
    );
    let (a_id, a) = app.workspace("A").await;
    let patterns = app.get(&a, "/api/v1/learning/patterns").await;
    assert_eq!(patterns.status(), StatusCode::OK);
    let cycle = app.post(&a, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(cycle.status(), StatusCode::OK);
    let mut s = Sse::open(&app, &a, None).await;
    publish(&app, &a_id, "a1");
    let f = s.next().await;
    assert!(f.id.unwrap().starts_with('l'), "local numbering");
    app.stop().await.unwrap();
}

/// A "Redis" that accepts connections and never answers (a hung server or
/// a black-holed network): the node starts, every request that would touch
/// Redis answers from the database (the deadline, then the outage state),
/// and `/readyz` says unavailable.
#[actix_web::test]
async fn a_redis_that_never_answers_blocks_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection, reading nothing, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    });
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.redis.url = format!("redis://127.0.0.1:{port}");
        s.redis.key_prefix = unique_prefix();
        s.redis.op_timeout_ms = 100;
    })
    .await;
    let ready = app.ready().await;
    assert_eq!(ready["redis"]["status"], "unavailable", "{ready}");
    let (a_id, a) = app.workspace("A").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for _ in 0..3 {
        let res = client
            .get(app.url("/api/v1/learning/patterns"))
            .bearer_auth(&a)
            .send()
            .await
            .expect("patterns answered (not stuck on Redis)");
        assert_eq!(res.status(), StatusCode::OK);
        let res = client
            .post(app.url("/api/v1/learning/cycles"))
            .bearer_auth(&a)
            .json(&json!({}))
            .send()
            .await
            .expect("cycle answered (not stuck on Redis)");
        assert_eq!(res.status(), StatusCode::OK);
    }
    let mut s = Sse::open(&app, &a, None).await;
    publish(&app, &a_id, "a1");
    assert!(
        s.next().await.id.unwrap().starts_with('l'),
        "local numbering"
    );
    app.stop().await.unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique_prefix() -> String {
    format!("test-{}:", uuid::Uuid::now_v7().simple())
}

/// Two nodes on one database and one Redis: an SSE client on node B gets
/// node A's events of its workspace (never another's), numbered in the
/// shared numbering; it resumes on either node by id; and workspace X's
/// client sending ids from Y's stream gets nothing of Y.
async fn two_nodes_share_events(backend: Backend) {
    if !redis_available().await {
        return;
    }
    let prefix = unique_prefix();
    let tweak = |p: String| {
        move |s: &mut swarmwise::config::Settings| {
            s.redis.url = redis_url();
            s.redis.key_prefix = p;
        }
    };
    let a = spawn_app_with(backend, tweak(prefix.clone())).await;
    let b = spawn_beside(&a, tweak(prefix.clone())).await;
    b.ready().await;
    let (x_id, x) = a.workspace("X").await;
    let (y_id, y) = a.workspace("Y").await;
    let mut on_b = Sse::open(&b, &x, None).await;
    let mut y_on_b = Sse::open(&b, &y, None).await;
    publish(&a, &y_id, "y1");
    publish(&a, &x_id, "x1");
    publish(&b, &x_id, "x2");
    publish(&a, &x_id, "x3");
    let mut ids = Vec::new();
    let mut agents = Vec::new();
    for _ in 0..3 {
        let f = on_b.next().await;
        assert_eq!(f.data.as_ref().unwrap()["workspace_id"], x_id.as_str());
        agents.push(agent_of(&f));
        ids.push(f.id.unwrap());
    }
    let mut sorted = agents.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["x1", "x2", "x3"],
        "A's and B's events of X, nothing of Y"
    );
    let mut seqs: Vec<u64> = ids.iter().map(|i| seq_of(i)).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        [1, 2, 3],
        "one numbering per workspace across nodes: {ids:?}"
    );
    assert!(
        ids.iter()
            .all(|i| i.starts_with('r') && i[..13] == ids[0][..13]),
        "{ids:?}"
    );
    let y1 = y_on_b.next().await;
    assert_eq!(agent_of(&y1), "y1");
    assert_eq!(
        seq_of(y1.id.as_ref().unwrap()),
        1,
        "Y has its own numbering"
    );

    // Resume on node A with the id of X's first event: the two after it.
    let first = ids.iter().find(|i| seq_of(i) == 1).unwrap();
    let mut on_a = Sse::open(&a, &x, Some(first)).await;
    let mut replayed = vec![agent_of(&on_a.next().await), agent_of(&on_a.next().await)];
    replayed.sort();
    let mut expected: Vec<String> = agents
        .iter()
        .zip(&ids)
        .filter(|(_, i)| seq_of(i) > 1)
        .map(|(a, _)| a.clone())
        .collect();
    expected.sort();
    assert_eq!(replayed, expected);

    // Hostile: Y's id on X's stream replays X's events (its own numbering)
    // or resets; Y's event never appears.
    let y_id_str = y1.id.unwrap();
    for node in [&a, &b] {
        let mut s = Sse::open(node, &x, Some(&y_id_str)).await;
        publish(&a, &x_id, "marker");
        loop {
            let f = s.next().await;
            let data = f.data.unwrap();
            assert_eq!(data["workspace_id"], x_id.as_str(), "{data}");
            if data["agents"][0] == "marker" {
                break;
            }
        }
    }
    drop((on_a, on_b, y_on_b));
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}
crate::both_backends!(two_nodes_share_events);

/// A Redis of the test's own (a `redis-server` child on a free port),
/// killed when dropped.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    async fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let url = format!("redis://127.0.0.1:{port}");
        poll_until("redis-server answers PING", || async {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        OwnRedis { child, port }
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis_state(app: &TestApp) -> String {
    let body: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["redis"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Redis goes away and comes back: meanwhile the node serves patterns and
/// cycles from the database and numbers events locally (streams get a
/// `numbering_changed` reset); `/readyz` follows; when Redis returns the
/// relay resubscribes, streams get a `relay_interrupted` reset, and events
/// are numbered in a new shared numbering (the old Redis lost its data).
#[actix_web::test]
async fn redis_goes_away_and_comes_back() {
    let redis = OwnRedis::start(free_port()).await;
    let port = redis.port;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.redis.url = format!("redis://127.0.0.1:{port}");
        s.redis.key_prefix = unique_prefix();
    })
    .await;
    assert_eq!(redis_state(&app).await, "ok");
    let (a_id, a) = app.workspace("A").await;
    let mut s = Sse::open(&app, &a, None).await;
    publish(&app, &a_id, "a1");
    let f = s.next().await;
    let shared = f.id.unwrap();
    assert!(shared.starts_with('r'), "{shared}");

    redis.kill();
    poll_until("readyz says Redis is unavailable", || async {
        match redis_state(&app).await.as_str() {
            "unavailable" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
    assert_eq!(
        app.get(&a, "/api/v1/learning/patterns").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.post(&a, "/api/v1/learning/cycles", &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    publish(&app, &a_id, "a2");
    let mut reasons = Vec::new();
    let local = loop {
        let f = s.next().await;
        let data = f.data.unwrap();
        if data["type"] == "reset" {
            reasons.push(data["reason"].as_str().unwrap().to_owned());
        } else if data["agents"][0] == "a2" {
            break f.id.unwrap();
        }
    };
    assert!(local.starts_with('l'), "{local}");
    assert!(
        reasons.contains(&"numbering_changed".to_owned()),
        "{reasons:?}"
    );

    let _back = OwnRedis::start(port).await;
    poll_until("readyz says Redis is ok again", || async {
        match redis_state(&app).await.as_str() {
            "ok" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
    loop {
        let data = s.next().await.data.unwrap();
        if data["type"] == "reset" && data["reason"] == "relay_interrupted" {
            break;
        }
    }
    publish(&app, &a_id, "a3");
    let again = loop {
        let f = s.next().await;
        if f.data.as_ref().unwrap()["agents"][0] == "a3" {
            break f.id.unwrap();
        }
    };
    assert!(again.starts_with('r'), "{again}");
    assert_ne!(
        again[..13],
        shared[..13],
        "a Redis that lost its data is a new numbering"
    );
    drop(s);
    app.stop().await.unwrap();
}
