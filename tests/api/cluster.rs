//! Several nodes, as an operator runs them: three `swarmwise serve`
//! processes on loopback sharing one PostgreSQL database and one Redis
//! (issue 13, item 5). Each test starts its own database and Redis key
//! prefix, so the tests run in parallel without seeing each other.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::events::Sse;
use crate::helpers::{
    fresh_database, poll_until, postgres_available, redis_available, redis_url, skipped,
    spawn_server_in, Backend, ServerProcess,
};

const ADMIN: &str = "cluster-admin-key";

/// Three (or more) nodes on one PostgreSQL database and one Redis.
struct Cluster {
    url: String,
    prefix: String,
    extra: Vec<(String, String)>,
    args: Vec<String>,
    nodes: Vec<Option<ServerProcess>>,
    http: reqwest::Client,
}

impl Cluster {
    /// Starts `n` nodes named `node-0` .. with the same database, Redis and
    /// `extra` settings (`SWARMWISE__...` pairs); `None` (the test is
    /// skipped, outside CI only) when PostgreSQL or Redis is unreachable.
    async fn start(test: &str, n: usize, extra: &[(&str, &str)]) -> Option<Self> {
        Self::start_with(test, n, &[], extra).await
    }

    /// [`Cluster::start`] with arguments after `serve` (e.g. `--config`).
    async fn start_with(
        test: &str,
        n: usize,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Option<Self> {
        if !postgres_available().await || !redis_available().await {
            skipped(test);
            return None;
        }
        let (url, _) = fresh_database(Backend::Postgres).await;
        let mut cluster = Self {
            url,
            prefix: format!("swarmwise-test-{}:", uuid::Uuid::now_v7().simple()),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            nodes: Vec::new(),
            http: reqwest::Client::new(),
        };
        for i in 0..n {
            let node = cluster.spawn(i);
            cluster.nodes.push(Some(node));
        }
        Some(cluster)
    }

    fn spawn(&self, i: usize) -> ServerProcess {
        let node_id = format!("node-{i}");
        let redis = redis_url();
        let mut envs: Vec<(&str, &str)> = vec![
            ("SWARMWISE__DATABASE__URL", &self.url),
            ("SWARMWISE__REDIS__URL", &redis),
            ("SWARMWISE__REDIS__KEY_PREFIX", &self.prefix),
            ("SWARMWISE__AUTH__ADMIN_KEY", ADMIN),
            ("SWARMWISE__CLUSTER__NODE_ID", &node_id),
        ];
        envs.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        spawn_server_in(None, &args, &envs)
    }

    /// The base URL of node `i`.
    fn at(&self, i: usize) -> &str {
        &self.nodes[i].as_ref().expect("node is running").address
    }

    /// SIGKILLs node `i` (no drain, no flush: a crash).
    fn kill(&mut self, i: usize) {
        drop(self.nodes[i].take().expect("node is running"));
    }

    /// Starts node `i` again (same node id, a new process).
    fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "kill node {i} first");
        self.nodes[i] = Some(self.spawn(i));
    }

    async fn post(&self, i: usize, key: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.at(i)))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, i: usize, key: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.at(i)))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A new workspace (created through node `i`); its API key.
    async fn workspace(&self, i: usize, name: &str) -> String {
        let (status, ws) = self
            .post(i, ADMIN, "/api/v1/workspaces", &json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{ws}");
        ws["api_key"].as_str().expect("api_key").to_owned()
    }

    /// Registers an `external` agent (tracked only) through node `i`.
    async fn agent(&self, i: usize, key: &str, id: &str) {
        let (status, body) = self
            .post(
                i,
                key,
                "/api/v1/agents",
                &json!({ "id": id, "name": format!("Agent {id}"), "kind": "external" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Tracks one recommendation of `agent` in `workflow` through node `i`.
    async fn track(&self, i: usize, key: &str, agent: &str, workflow: &str, confidence: f64) {
        let (status, body) = self
            .post(
                i,
                key,
                "/api/v1/recommendations",
                &json!({
                    "agent_id": agent,
                    "correlation_id": workflow,
                    "workflow_id": workflow,
                    "recommendation_type": "strategy",
                    "content": {"pick": agent},
                    "confidence": confidence,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Evaluates `workflow` through node `i`.
    async fn outcome(&self, i: usize, key: &str, workflow: &str, quality: f64) {
        let (status, body) = self
            .post(
                i,
                key,
                &format!("/api/v1/workflows/{workflow}/outcome"),
                &json!({ "overall_quality_score": quality }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// The trust card of `agent` as node `i` serves it (`None` before it has one).
    async fn trust(&self, i: usize, key: &str, agent: &str) -> Option<Value> {
        let (status, card) = self
            .get(i, key, &format!("/api/v1/learning/trust-scores/{agent}"))
            .await;
        (status == StatusCode::OK).then_some(card)
    }
}

/// Item 5: an evaluation committed through node A is folded into trust read
/// from node C (and B), without waiting for the scheduled recompute; and a
/// workspace key created through A works on C at once (keys live in the
/// database, every node's key cache misses to it).
#[tokio::test]
async fn an_evaluation_on_one_node_is_visible_in_trust_read_from_another() {
    let Some(cluster) = Cluster::start(
        "cluster::an_evaluation_on_one_node_is_visible_in_trust_read_from_another",
        3,
        &[("SWARMWISE__SCHEDULER__ENABLED", "false")],
    )
    .await
    else {
        return;
    };
    let key = cluster.workspace(0, "shared").await;
    // Node C knows nothing of a1 yet; warm its snapshot of the workspace so
    // the test proves a refresh, not a first load.
    assert!(cluster.trust(2, &key, "a1").await.is_none());
    cluster.agent(0, &key, "a1").await;
    for i in 0..4 {
        let wf = format!("wf-{i}");
        cluster.track(0, &key, "a1", &wf, 0.8).await;
        cluster.outcome(0, &key, &wf, 90.0).await;
    }
    let card = cluster
        .trust(0, &key, "a1")
        .await
        .expect("node A has a card");
    assert_eq!(card["sample_count"], 4, "{card}");
    for node in [1, 2] {
        let seen = poll_until(&format!("node {node} folds node A's 4 outcomes"), || {
            let cluster = &cluster;
            let key = &key;
            async move {
                match cluster.trust(node, key, "a1").await {
                    Some(card) if card["sample_count"] == 4 => Ok(card),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        assert_eq!(seen["overall_trust"], card["overall_trust"], "{seen}");
    }
    // Another workspace, through node B, sees none of it.
    let other = cluster.workspace(1, "other").await;
    assert!(cluster.trust(2, &other, "a1").await.is_none());
}

/// Reads `stream` until an event satisfies `wanted` (each frame within
/// 30 s); that event's id (empty when it has none) and JSON.
async fn next_sse_with_id(stream: &mut Sse, wanted: impl Fn(&Value) -> bool) -> (String, Value) {
    loop {
        let frame = stream.next().await;
        let data = frame.data.expect("a data frame");
        if wanted(&data) {
            return (frame.id.unwrap_or_default(), data);
        }
    }
}

/// [`next_sse_with_id`] without the id.
async fn next_sse(stream: &mut Sse, wanted: impl Fn(&Value) -> bool) -> Value {
    next_sse_with_id(stream, wanted).await.1
}

/// Opens `GET /api/v1/events` on node `node` with `key`, resuming after
/// `last` when given.
async fn open_stream(cluster: &Cluster, node: usize, key: &str, last: Option<&str>) -> Sse {
    let mut request = cluster
        .http
        .get(format!("{}/api/v1/events", cluster.at(node)))
        .bearer_auth(key);
    if let Some(id) = last {
        request = request.header("Last-Event-ID", id);
    }
    Sse::from_response(request.send().await.expect("open the stream"))
}

/// Item 5: an SSE client on node B receives the events node A produces for
/// its workspace, and a client of another workspace on node C receives none.
#[tokio::test]
async fn an_sse_client_on_one_node_receives_another_nodes_events() {
    let Some(cluster) = Cluster::start(
        "cluster::an_sse_client_on_one_node_receives_another_nodes_events",
        3,
        &[("SWARMWISE__SCHEDULER__ENABLED", "false")],
    )
    .await
    else {
        return;
    };
    let key = cluster.workspace(0, "events").await;
    let other = cluster.workspace(0, "bystander").await;
    cluster.agent(0, &key, "a1").await;
    cluster.agent(2, &other, "b1").await;
    let mut on_b = open_stream(&cluster, 1, &key, None).await;
    let mut theirs = open_stream(&cluster, 2, &other, None).await;
    cluster.track(0, &key, "a1", "wf-1", 0.7).await;
    cluster.outcome(0, &key, "wf-1", 85.0).await;
    let (id, event) = next_sse_with_id(&mut on_b, |e| e["type"] == "trust_updated").await;
    assert_eq!(event["agents"], json!(["a1"]), "{event}");
    assert!(
        id.starts_with('r'),
        "numbered in the shared (Redis) numbering: {id:?}"
    );

    // The balancer moves the client to node C: it resumes after the last id
    // it saw and gets what node A produced meanwhile, replayed by C.
    drop(on_b);
    cluster.agent(0, &key, "a2").await;
    cluster.track(0, &key, "a2", "wf-2", 0.7).await;
    cluster.outcome(0, &key, "wf-2", 20.0).await;
    let mut on_c = open_stream(&cluster, 2, &key, Some(&id)).await;
    let replayed = next_sse(&mut on_c, |e| {
        assert_ne!(e["type"], "reset", "C could tell what was missed: {e}");
        e["type"] == "trust_updated"
    })
    .await;
    assert_eq!(replayed["agents"], json!(["a2"]), "{replayed}");
    // The same id presented with another workspace's key replays nothing of
    // this workspace (a reset or nothing at all, never a2's event).
    let mut stolen = open_stream(&cluster, 2, &other, Some(&id)).await;
    let first = next_sse(&mut stolen, |_| true);
    cluster.agent(2, &other, "b0").await;
    cluster.track(2, &other, "b0", "wf-b0", 0.6).await;
    cluster.outcome(2, &other, "wf-b0", 40.0).await;
    let first = first.await;
    assert_ne!(first["agents"], json!(["a2"]), "{first}");
    // The bystander's stream carries nothing of it: its own event, produced
    // after, is the first data it sees.
    cluster.track(2, &other, "b1", "wf-b", 0.6).await;
    cluster.outcome(2, &other, "wf-b", 40.0).await;
    next_sse(&mut theirs, |e| {
        assert_ne!(
            e["agents"],
            json!(["a1"]),
            "another workspace's event leaked: {e}"
        );
        e["type"] == "trust_updated" && e["agents"] == json!(["b1"])
    })
    .await;
}

/// A config file for nodes running the durable-run workflows of
/// `durable_runs::workflows_dir` (loopback agents allowed, a one-second
/// lease), written into that folder → its path.
fn durable_config(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[agents]\nallow_hosts = [\"127.0.0.1\"]\n[workflows]\ndir = \"workflows\"\nlease_secs = 3\n\
         [scheduler]\nenabled = false\n",
    )
    .unwrap();
    path.display().to_string()
}

/// Three nodes running the durable-run workflows, a workspace (its key)
/// and the loopback `agents` registered through node A.
async fn durable_cluster(
    test: &str,
    agents: &[&str],
) -> Option<(
    tempfile::TempDir,
    Cluster,
    crate::durable_runs::Agents,
    String,
)> {
    let dir = crate::durable_runs::workflows_dir();
    let config = durable_config(&dir);
    let cluster = Cluster::start_with(test, 3, &["--config", &config], &[]).await?;
    let peer = crate::durable_runs::Agents::start();
    let key = cluster.workspace(0, "durable").await;
    peer.register(cluster.at(0), &key, agents).await;
    Some((dir, cluster, peer, key))
}

async fn run_state(cluster: &Cluster, node: usize, key: &str, id: &str) -> Value {
    let (status, run) = cluster
        .get(node, key, &format!("/api/v1/workflows/runs/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    run
}

/// Item 5: node A runs a two-stage workflow and is SIGKILLed while the
/// second stage waits on its agent; another node takes the run over after
/// the lease and completes it, without asking the first stage's agent
/// again, and exactly one node asks the second stage's agent again.
#[actix_web::test]
async fn a_killed_nodes_run_completes_on_another_node() {
    let Some((_dir, mut cluster, agents, key)) = durable_cluster(
        "cluster::a_killed_nodes_run_completes_on_another_node",
        &["fast", "held"],
    )
    .await
    else {
        return;
    };
    let (status, started) = cluster
        .post(
            0,
            &key,
            "/api/v1/workflows/runs",
            &json!({"workflow": "two_step", "wait": false}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["run_id"].as_str().unwrap().to_owned();
    poll_until("first stage stored, second asked", || async {
        let run = run_state(&cluster, 1, &key, &id).await;
        let stages = run["progress"]["stages"].as_array().map_or(0, Vec::len);
        if stages == 1 && agents.calls("held") == 1 {
            Ok(())
        } else {
            Err(run)
        }
    })
    .await;
    cluster.kill(0);
    poll_until(
        "the second stage asked again by a surviving node",
        || async {
            match agents.calls("held") {
                2 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;
    agents.gate.add_permits(10);
    let run = poll_until("the run succeeded on a surviving node", || async {
        let run = run_state(&cluster, 2, &key, &id).await;
        if run["status"] == "succeeded" {
            Ok(run)
        } else {
            Err(run)
        }
    })
    .await;
    assert_eq!(agents.calls("fast"), 1, "stage one not repeated: {run}");
    // The stage in progress is asked again by whichever node took the run
    // over (more than once only if a loaded machine delayed a lease renewal
    // past the lease: a legitimate second takeover, fenced).
    let held = agents.calls("held");
    assert!(held >= 2, "{held}: {run}");
    // The finished stage's recommendation is tracked once.
    let (_, recs) = cluster
        .get(
            1,
            &key,
            &format!("/api/v1/recommendations?workflow_id={id}&agent_id=fast"),
        )
        .await;
    assert_eq!(recs["items"].as_array().map(Vec::len), Some(1), "{recs}");
    // The killed node comes back and finds nothing left to do.
    cluster.restart(0);
    let again = run_state(&cluster, 0, &key, &id).await;
    assert_eq!(again["status"], "succeeded");
    assert_eq!(agents.calls("held"), held, "a finished run is not resumed");
}

/// Item 5: a run paused for approval on node A survives A's SIGKILL and
/// restart; it is approved through node B and completes, running the next
/// stage once.
#[actix_web::test]
async fn an_approval_survives_a_killed_node() {
    let Some((_dir, mut cluster, agents, key)) = durable_cluster(
        "cluster::an_approval_survives_a_killed_node",
        &["fast", "final"],
    )
    .await
    else {
        return;
    };
    let (status, run) = cluster
        .post(
            0,
            &key,
            "/api/v1/workflows/runs",
            &json!({"workflow": "gated", "wait": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    cluster.kill(0);
    cluster.restart(0);
    let paused = run_state(&cluster, 0, &key, &id).await;
    assert_eq!(paused["status"], "awaiting_approval", "{paused}");
    // Another workspace cannot approve it, through any node.
    let other = cluster.workspace(2, "intruder").await;
    let (status, _) = cluster
        .post(
            2,
            &other,
            &format!("/api/v1/workflows/runs/{id}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = cluster
        .post(
            1,
            &key,
            &format!("/api/v1/workflows/runs/{id}/approve"),
            &json!({"comment": "ship it"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let done = poll_until("the approved run finishes", || async {
        let run = run_state(&cluster, 2, &key, &id).await;
        if run["status"] == "succeeded" {
            Ok(run)
        } else {
            Err(run)
        }
    })
    .await;
    assert_eq!(agents.calls("final"), 1, "{done}");
    assert_eq!(agents.calls("fast"), 1, "{done}");
}

/// The value of counter `swarmwise_scheduled_jobs_total{job="learning_cycle"}`
/// on node `i` (0 before it ran one).
async fn cycle_jobs_run(cluster: &Cluster, i: usize) -> f64 {
    let text = cluster
        .http
        .get(format!("{}/metrics", cluster.at(i)))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with("swarmwise_scheduled_jobs_total{job=\"learning_cycle\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().expect("a number"))
}

async fn claims(url: &str) -> (i64, i64) {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    let row = sqlx::query(
        "SELECT count(*) AS n, count(DISTINCT node) AS nodes FROM scheduled_claims WHERE job = 'learning_cycle'",
    )
    .fetch_one(&mut c)
    .await
    .expect("count claims");
    (row.get("n"), row.get("nodes"))
}

/// Item 5: with a learning cycle scheduled every second on three nodes,
/// each occurrence runs on exactly one node (the sum of the nodes' job
/// counters never exceeds the occurrences claimed, and only the leader
/// runs them); when the leader is killed another node takes over after the
/// lease and the schedule goes on.
#[tokio::test]
async fn a_scheduled_job_runs_once_across_nodes() {
    let Some(mut cluster) = Cluster::start(
        "cluster::a_scheduled_job_runs_once_across_nodes",
        3,
        &[
            ("SWARMWISE__SCHEDULER__LEARNING_CYCLE", "* * * * * *"),
            ("SWARMWISE__SCHEDULER__LEADER_LEASE_SECS", "2"),
        ],
    )
    .await
    else {
        return;
    };
    cluster.workspace(0, "scheduled").await;
    poll_until("five occurrences claimed", || async {
        match claims(&cluster.url).await {
            (n, _) if n >= 5 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut runs = Vec::new();
    for i in 0..3 {
        runs.push(cycle_jobs_run(&cluster, i).await);
    }
    let (claimed, nodes) = claims(&cluster.url).await;
    let total: f64 = runs.iter().sum();
    assert!(total >= 4.0, "the job ran: {runs:?}");
    assert!(
        total <= claimed as f64,
        "no occurrence ran twice: {runs:?} runs, {claimed} claims"
    );
    assert_eq!(nodes, 1, "one leader claimed them all");
    let leader = runs.iter().position(|r| *r > 0.0).expect("a leader");
    assert_eq!(
        runs.iter().filter(|r| **r > 0.0).count(),
        1,
        "only the leader runs scheduled jobs: {runs:?}"
    );

    cluster.kill(leader);
    poll_until("another node leads and claims", || async {
        match claims(&cluster.url).await {
            (_, 2) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let next = poll_until("the new leader runs the job", || async {
        for &i in &survivors {
            if cycle_jobs_run(&cluster, i).await > 0.0 {
                return Ok(i);
            }
        }
        Err("no survivor ran it yet")
    })
    .await;
    let mut after = 0.0;
    for &i in &survivors {
        let r = cycle_jobs_run(&cluster, i).await;
        assert!(
            i == next || r == 0.0,
            "one leader at a time: node {i} ran {r}"
        );
        after += r;
    }
    let (claimed_after, _) = claims(&cluster.url).await;
    assert!(
        total + after <= claimed_after as f64,
        "still never twice: {total} + {after} runs, {claimed_after} claims"
    );
}
