//! The ceiling of a durable receiver on this machine, for `run.sh ceiling`: what any receiver can reach that parses
//! VK's JSON and makes the event durable before it answers `ok` — with none of vkhook's work (no secret check, no
//! dedup answer, no decision, no metrics, no logging).
//!
//! `ceiling MODE --port P`, MODE one of:
//! - `log`: appends each body to a file; one `fdatasync` per group of waiting events (no database at all);
//! - `sqlite`: inserts into one table with a unique `(group_id, event_id)` index, WAL, `synchronous=FULL`, one
//!   transaction per group, on a dedicated thread with rusqlite (no sqlx hand-offs);
//! - `pg`: one multi-row `INSERT … UNNEST … ON CONFLICT DO NOTHING` per group on PostgreSQL (`$VKHOOK_LOAD_PG`),
//!   `$CEILING_WRITERS` connections (default 1, the fastest here).
//!
//! Prints `READY {"port":…,"secret":"","pid":…}` like `load_target`, so run.sh drives it the same way.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::sync::{mpsc, oneshot, Mutex};

/// One event waiting for the next group commit: group, event id, body, and who to tell.
struct Job {
    group_id: i64,
    event_id: String,
    body: Bytes,
    done: oneshot::Sender<()>,
}

/// Most events one group commit takes (as vkhook's writer).
const MAX_BATCH: usize = 512;

/// Adds to `batch` whatever else is already waiting, up to [`MAX_BATCH`].
fn top_up(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < MAX_BATCH {
        let Ok(job) = rx.try_recv() else { break };
        batch.push(job);
    }
}

/// Tells every request of a written batch that its event is durable (a request that went away needs no answer).
fn durable(batch: &mut Vec<Job>) {
    for job in batch.drain(..) {
        let _ = job.done.send(());
    }
}

fn next_batch_blocking(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) -> bool {
    let Some(job) = rx.blocking_recv() else { return false };
    batch.push(job);
    top_up(rx, batch);
    true
}

fn log_writer(dir: std::path::PathBuf, mut rx: mpsc::Receiver<Job>) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("events.log")).unwrap();
    let mut batch = Vec::new();
    while next_batch_blocking(&mut rx, &mut batch) {
        for job in &batch {
            file.write_all(&job.body).unwrap();
            file.write_all(b"\n").unwrap();
        }
        file.sync_data().unwrap();
        durable(&mut batch);
    }
}

fn sqlite_writer(dir: std::path::PathBuf, mut rx: mpsc::Receiver<Job>) {
    let mut db = rusqlite::Connection::open(dir.join("ceiling.db")).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE inbox (id INTEGER PRIMARY KEY, group_id INTEGER NOT NULL, event_id TEXT NOT NULL,
                             payload BLOB NOT NULL, received_at INTEGER NOT NULL);
         CREATE UNIQUE INDEX inbox_event ON inbox (group_id, event_id);",
    )
    .unwrap();
    let mut batch = Vec::new();
    while next_batch_blocking(&mut rx, &mut batch) {
        let tx = db.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO inbox (group_id, event_id, payload, received_at) VALUES (?1, ?2, ?3, 0) \
                     ON CONFLICT DO NOTHING",
                )
                .unwrap();
            for job in &batch {
                insert.execute(rusqlite::params![job.group_id, job.event_id, &job.body[..]]).unwrap();
            }
        }
        tx.commit().unwrap();
        durable(&mut batch);
    }
}

async fn pg_writer(url: String, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let insert = db
        .prepare(
            "INSERT INTO ceiling_inbox (group_id, event_id, payload, received_at) \
             SELECT g, e, p, 0 FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS batch(g, e, p) \
             ON CONFLICT DO NOTHING",
        )
        .await
        .unwrap();
    let mut batch = Vec::new();
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(job) = rx.recv().await else { return };
            batch.push(job);
            top_up(&mut rx, &mut batch);
        }
        let groups: Vec<i64> = batch.iter().map(|j| j.group_id).collect();
        let events: Vec<&str> = batch.iter().map(|j| j.event_id.as_str()).collect();
        let bodies: Vec<&str> = batch.iter().map(|j| std::str::from_utf8(&j.body).unwrap()).collect();
        db.execute(&insert, &[&groups, &events, &bodies]).await.unwrap();
        durable(&mut batch);
    }
}

async fn start_pg(rx: mpsc::Receiver<Job>) {
    let url = std::env::var("VKHOOK_LOAD_PG").expect("pg needs VKHOOK_LOAD_PG (a scratch database)");
    let writers: usize = std::env::var("CEILING_WRITERS").ok().and_then(|w| w.parse().ok()).unwrap_or(1);
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    db.batch_execute(
        "DROP TABLE IF EXISTS ceiling_inbox;
         CREATE TABLE ceiling_inbox (id BIGSERIAL PRIMARY KEY, group_id BIGINT NOT NULL, event_id TEXT NOT NULL,
                                     payload TEXT NOT NULL, received_at BIGINT NOT NULL);
         CREATE UNIQUE INDEX ceiling_inbox_event ON ceiling_inbox (group_id, event_id);",
    )
    .await
    .unwrap();
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..writers.max(1) {
        tokio::spawn(pg_writer(url.clone(), rx.clone()));
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let port: u16 = args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("vkhook-ceiling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (queue, rx) = mpsc::channel::<Job>(8192);
    match mode.as_str() {
        "log" => drop(std::thread::spawn(move || log_writer(dir, rx))),
        "sqlite" => drop(std::thread::spawn(move || sqlite_writer(dir, rx))),
        "pg" => start_pg(rx).await,
        _ => panic!("usage: ceiling log|sqlite|pg --port P"),
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
    println!(
        "READY {{\"port\":{},\"secret\":\"\",\"pid\":{}}}",
        listener.local_addr().unwrap().port(),
        std::process::id()
    );
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let queue = queue.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let queue = queue.clone();
                async move {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let group_id = event["group_id"].as_i64().unwrap_or_default();
                    let event_id = event["event_id"].as_str().unwrap_or_default().to_owned();
                    let (done, durable) = oneshot::channel();
                    queue.send(Job { group_id, event_id, body, done }).await.unwrap();
                    durable.await.unwrap();
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}
