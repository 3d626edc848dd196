//! `kairos baseline`: the yardstick for every HTTP figure in docs/BENCHMARKS.md. A minimal
//! axum server on the same runtime and HTTP stack as the service, answering every GET and
//! every POST (any path; a POST's body is read whole; 202 as for an ingest) with a fixed JSON body of a chosen size
//! and nothing else: no auth, no parsing, no store. `scripts/bench` measures the service and
//! this server with the same load tool in the same run and reports their ratio, so figures
//! from machines of different speed compare.

use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct BaselineOptions {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Bytes of the body every GET answers (e.g. the size of a recommendation answer).
    #[arg(long, default_value_t = 9_900)]
    pub get_bytes: usize,
    /// Bytes of the body every POST answers (e.g. the size of an ingest answer).
    #[arg(long, default_value_t = 30)]
    pub post_bytes: usize,
}

/// A JSON string of exactly `n` bytes (at least the two quotes).
pub fn json_body(n: usize) -> Bytes {
    let mut body = vec![b'x'; n.max(2)];
    body[0] = b'"';
    *body.last_mut().expect("at least two bytes") = b'"';
    Bytes::from(body)
}

/// The router: GET answers 200 with `get_bytes`, POST reads the request and answers 202
/// with `post_bytes`.
pub fn router(opts: &BaselineOptions) -> Router {
    let (get, post) = (json_body(opts.get_bytes), json_body(opts.post_bytes));
    Router::new().fallback(move |method: Method, body: Bytes| {
        // 202 to a POST, as the service answers an ingest.
        let (status, answer) = if method == Method::POST {
            drop(body);
            (StatusCode::ACCEPTED, post.clone())
        } else {
            (StatusCode::OK, get.clone())
        };
        async move { (status, [(header::CONTENT_TYPE, "application/json")], answer).into_response() }
    })
}

pub async fn run(opts: BaselineOptions) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port)).await?;
    eprintln!("baseline: listening on {} (GET {} bytes, POST {} bytes)", listener.local_addr()?, opts.get_bytes, opts.post_bytes);
    axum::serve(listener, router(&opts)).with_graceful_shutdown(crate::startup::shutdown_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_has_exactly_the_size_asked_and_is_json() {
        for n in [0, 2, 3, 9_900] {
            let b = json_body(n);
            assert_eq!(b.len(), n.max(2));
            assert!(serde_json::from_slice::<serde_json::Value>(&b).unwrap().is_string());
        }
    }

    #[tokio::test]
    async fn get_and_post_answer_their_fixed_bodies_on_any_path() {
        let opts = BaselineOptions { host: "127.0.0.1".into(), port: 0, get_bytes: 500, post_bytes: 31 };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(&opts);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let get = client.get(format!("http://{addr}/v1/users/u1/recommendations?n=10")).send().await.unwrap();
        assert_eq!(get.status(), 200);
        assert_eq!(get.bytes().await.unwrap().len(), 500);
        let post = client.post(format!("http://{addr}/v1/events")).body(vec![b'{'; 4000]).send().await.unwrap();
        assert_eq!(post.status(), 202);
        assert_eq!(post.bytes().await.unwrap().len(), 31);
        server.abort();
    }
}
