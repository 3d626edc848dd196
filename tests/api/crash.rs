//! Durability: SIGKILL the real binary while clients post, restart it, and check that every
//! acknowledged event is stored exactly once (PostgreSQL).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestDb, config_dir};

const DEV_KEY: &str = kairos::config::DEV_KEY;

/// Starts `kairos serve` on a free port against `db`; returns the child and its base URL.
fn start_server(db: &TestDb) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .arg("serve")
        .env("KAIROS_CONFIG_DIR", config_dir())
        .env("DATABASE_URL", &db.url)
        .env("KAIROS__SERVER__PORT", "0")
        .env("KAIROS__TELEMETRY__LOG_FORMAT", "json")
        .env("KAIROS__TELEMETRY__LOG_LEVEL", "info")
        .env("KAIROS__TUNING__SCHEDULER__ENABLED", "false")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kairos binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address before exiting").unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "kairos listening"
        {
            break v["addr"].as_str().unwrap().to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_a_sigkill_exactly_once_on_postgres() {
    let db = TestDb::create().await;
    let (mut child, base) = start_server(&db);
    let acked: Arc<Mutex<Vec<(uuid::Uuid, Value)>>> = Arc::default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..100_000 {
                let events: Vec<Value> = (0..10)
                    .map(|i| json!({"event_id": uuid::Uuid::new_v4(), "user_id": format!("c{c}"), "item_id": format!("i{round}-{i}"), "kind": "view"}))
                    .collect();
                let r = client.post(format!("{base}/v1/events")).bearer_auth(DEV_KEY).json(&json!({"events": events})).send().await;
                match r {
                    Ok(r) if r.status() == 202 => {
                        let mut a = acked.lock().unwrap();
                        for e in events {
                            a.push((uuid::Uuid::parse_str(e["event_id"].as_str().unwrap()).unwrap(), e));
                        }
                    }
                    _ => return, // the server is gone
                }
            }
        }));
    }
    // Let the clients get going, then kill the server in the middle of their stream.
    for _ in 0..200 {
        if acked.lock().unwrap().len() >= 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "clients got acknowledgements before the kill ({})", acked.len());

    let (mut child, base) = start_server(&db);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let ids: Vec<uuid::Uuid> = acked.iter().map(|(id, _)| *id).collect();
    let stored: i64 = sqlx::query_scalar("select count(*) from events where event_id = any($1)").bind(&ids).fetch_one(&pool).await.unwrap();
    assert_eq!(stored as usize, ids.len(), "every acknowledged event is stored");
    let per_id_max: Option<i64> = sqlx::query_scalar("select max(c) from (select count(*) c from events group by event_id) t").fetch_one(&pool).await.unwrap();
    assert_eq!(per_id_max, Some(1));

    // Re-sending acknowledged events after the restart is a no-op counted as duplicates.
    let resend: Vec<Value> = acked.iter().take(500).map(|(_, e)| e.clone()).collect();
    let n = resend.len();
    let r: Value = client.post(format!("{base}/v1/events")).bearer_auth(DEV_KEY).json(&json!({"events": resend})).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({"accepted": 0, "duplicates": n}));
    child.kill().unwrap();
    child.wait().unwrap();
    pool.close().await;
}
