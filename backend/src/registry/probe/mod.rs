//! One heartbeat probe, as cheaply as it can be done: with 10,000 services
//! probed every second, the registry does little else.
//!
//! A plain `http` heartbeat is probed by the hand-written HTTP/1.1 client
//! in [`http1`] (its header gives the figure that keeps it), over a
//! connection kept by address; an `https` one goes through the shared client
//! ([`shared_client`]).
//!
//! Either way the rules are the same: the caller sets one deadline for the
//! whole probe (connecting, asking, reading), redirects are never followed
//! (3xx is a failure), at most [`PROBE_BODY_LIMIT`] of the body is read (a
//! longer one is cut off, still counts, and its connection is dropped), 2xx
//! is success, and the cluster token goes with every probe when there is one
//! (a service on our runtime counts only such probes as the registry's).

mod http1;
mod shared_client;

pub(super) use http1::Connections;
use http1::Plain;

/// Most of a heartbeat answer's body the registry reads.
pub(super) const PROBE_BODY_LIMIT: usize = 64 * 1024;

/// Probes one heartbeat URL, again and again.
pub(super) struct Probe {
    how: How,
}

enum How {
    Plain(Plain),
    /// Through the shared client (`https`, or a URL the plain path does not
    /// take: one with credentials in it, say).
    Client(reqwest::Url, Option<String>),
}

impl Probe {
    /// `proof`: the registry's short-lived probe proof (see
    /// `gradebook_runtime::credential::Credential::probe_proof`), sent in its
    /// own header: it opens nothing, so the probed address gains nothing.
    pub fn new(url: &reqwest::Url, proof: Option<&str>, connections: &Connections) -> Self {
        let how = match Plain::new(url, proof, connections) {
            Some(plain) => How::Plain(plain),
            None => How::Client(url.clone(), proof.map(str::to_owned)),
        };
        Self { how }
    }

    /// One probe, without a deadline of its own: the caller drops it when
    /// time is up (a connection caught mid-probe is dropped with it).
    pub async fn run(&mut self, client: &reqwest::Client) -> Result<(), String> {
        match &mut self.how {
            How::Plain(plain) => plain.probe().await,
            How::Client(url, proof) => shared_client::probe(client, url, proof.as_deref()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// What the service does with the `request`-th request on its `conn`-th
    /// connection (both from 0): the bytes it answers, and whether it then
    /// closes the connection.
    type Script = fn(conn: usize, request: usize) -> (Vec<u8>, bool);

    /// A heartbeat served by hand, so that the test sees every connection
    /// and every request head.
    struct Service {
        url: reqwest::Url,
        connections: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    async fn service(path: &str, script: Script) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap()).parse().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(vec![]));
        let (count, seen) = (connections.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let conn = count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for request in 0.. {
                        // One request head (probes have no body).
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0; 1024];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        seen.lock().unwrap().push(String::from_utf8_lossy(&buf[..end]).into_owned());
                        buf.drain(..end);
                        let (answer, close) = script(conn, request);
                        if stream.write_all(&answer).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        Service { url, connections, heads }
    }

    async fn probe(probe: &mut Probe) -> Result<(), String> {
        let client = reqwest::Client::new();
        tokio::time::timeout(Duration::from_secs(2), probe.run(&client)).await.unwrap_or(Err("timed out".into()))
    }

    #[tokio::test]
    async fn a_probe_asks_for_the_path_and_query_with_the_host_and_its_proof_but_no_credential() {
        let svc = service("/svc/7/heartbeat?x=1", |_, _| (OK.into(), false)).await;
        let mut p = Probe::new(&svc.url, Some("s3cret"), &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        let head = svc.heads.lock().unwrap()[0].to_lowercase();
        let port = svc.url.port().unwrap();
        assert!(head.starts_with("get /svc/7/heartbeat?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")), "{head}");
        assert!(head.contains("\r\nx-gradebook-probe: s3cret\r\n"), "{head}");
        assert!(!head.contains("authorization"), "{head}");

        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert!(!svc.heads.lock().unwrap()[1].to_lowercase().contains("probe"));
    }

    #[tokio::test]
    async fn probes_share_one_kept_connection() {
        let svc = service("/heartbeat", |_, _| (OK.into(), false)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        for _ in 0..5 {
            assert_eq!(probe(&mut p).await, Ok(()));
        }
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
        assert_eq!(svc.heads.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_connection_the_service_closed_between_probes_is_replaced() {
        // Answers as if it kept the connection, then closes it.
        let svc = service("/heartbeat", |_, _| (OK.into(), true)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        for _ in 0..3 {
            assert_eq!(probe(&mut p).await, Ok(()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(svc.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_kept_connection_closed_as_the_probe_goes_out_is_probed_again_on_a_fresh_one() {
        // The second request on a connection is read and never answered.
        let svc =
            service("/heartbeat", |_, request| if request == 0 { (OK.into(), false) } else { (vec![], true) }).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 2);
        assert_eq!(svc.heads.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_service_that_never_answers_fails_without_a_second_try_on_a_fresh_connection() {
        let svc = service("/heartbeat", |_, _| (vec![], true)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        let why = probe(&mut p).await.unwrap_err();
        assert!(why.contains("connection closed before message completed"), "{why}");
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_a_failure_and_is_not_followed() {
        let svc = service("/heartbeat", |_, _| {
            (b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n".to_vec(), false)
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Err("heartbeat answered 302 Found".into()));
        assert_eq!(probe(&mut p).await, Err("heartbeat answered 302 Found".into()));
        let heads = svc.heads.lock().unwrap();
        assert!(heads.iter().all(|h| h.starts_with("GET /heartbeat ")), "{heads:?}");
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1, "a whole answer keeps its connection");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_cut_off_still_counts_and_its_connection_is_dropped() {
        let svc = service("/heartbeat", |_, _| {
            let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
            answer.resize(answer.len() + 1_000_000, b'x');
            (answer, false)
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_chunked_answer_read_to_its_end_keeps_its_connection() {
        let svc = service("/heartbeat", |_, _| {
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n".to_vec(), false)
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_whose_body_stalls_is_not_a_success() {
        let svc =
            service("/heartbeat", |_, _| (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok".to_vec(), false)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        let client = reqwest::Client::new();
        assert!(tokio::time::timeout(Duration::from_millis(300), p.run(&client)).await.is_err());
        // The connection caught mid-answer is not used again.
        assert!(probe(&mut p).await.is_err());
        assert_eq!(svc.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_fails_as_before() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/heartbeat", listener.local_addr().unwrap()).parse().unwrap();
        drop(listener);
        assert_eq!(probe(&mut Probe::new(&url, None, &Connections::default())).await, Err("connection failed".into()));
    }

    #[test]
    fn https_and_odd_urls_go_through_the_shared_client() {
        let plain =
            |u: &str| matches!(Probe::new(&u.parse().unwrap(), None, &Connections::default()).how, How::Plain(_));
        assert!(plain("http://127.0.0.1:8080/heartbeat"));
        assert!(plain("http://[::1]:8080/heartbeat"));
        assert!(plain("http://localhost/heartbeat"));
        assert!(!plain("https://127.0.0.1:8443/heartbeat"));
        assert!(!plain("http://user:pw@127.0.0.1:8080/heartbeat"));
    }

    #[test]
    fn the_request_is_written_once_with_the_host_as_reqwest_sends_it() {
        let request = |u: &str, token| match Probe::new(&u.parse().unwrap(), token, &Connections::default()).how {
            How::Plain(p) => String::from_utf8(p.request.into()).unwrap(),
            How::Client(..) => unreachable!(),
        };
        assert_eq!(
            request("http://localhost:80/heartbeat#x", None),
            "GET /heartbeat HTTP/1.1\r\nhost: localhost\r\naccept: */*\r\n\r\n"
        );
        assert_eq!(
            request("http://[::1]:8080/a%20b?q=1", Some("t0k")),
            "GET /a%20b?q=1 HTTP/1.1\r\nhost: [::1]:8080\r\naccept: */*\r\nx-gradebook-probe: t0k\r\n\r\n"
        );
        assert!(!request("http://localhost:8080/", Some("bad\r\ntoken")).contains("authorization"));
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_odd_but_whole_answers_are_read() {
        let svc = service("/heartbeat", |conn, _| match conn {
            0 => (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(), false),
            // Its end is its connection's close.
            1 => (b"HTTP/1.1 200 OK\r\n\r\nstill fine".to_vec(), true),
            _ => (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_vec(), false),
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()), "read until close");
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()), "a connection the answer closed is not reused");
        assert_eq!(svc.connections.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_garbled_answer_is_a_failure() {
        let svc = service("/heartbeat", |_, _| (b"hello there\r\n\r\n".to_vec(), false)).await;
        let why = probe(&mut Probe::new(&svc.url, None, &Connections::default())).await.unwrap_err();
        assert!(why.starts_with("invalid answer"), "{why}");
    }

    #[tokio::test]
    async fn probers_of_one_address_share_its_idle_connections_while_one_of_them_lives() {
        let svc = service("/svc/1/heartbeat", |_, _| (OK.into(), false)).await;
        let connections = Connections::default();
        let mut other_path = svc.url.clone();
        other_path.set_path("/svc/2/heartbeat");
        let mut first = Probe::new(&svc.url, None, &connections);
        let mut second = Probe::new(&other_path, None, &connections);
        for _ in 0..3 {
            assert_eq!(probe(&mut first).await, Ok(()));
            assert_eq!(probe(&mut second).await, Ok(()));
        }
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
        let heads = svc.heads.lock().unwrap().clone();
        assert!(heads[1].starts_with("GET /svc/2/heartbeat "), "{heads:?}");

        let address = match &first.how {
            How::Plain(plain) => plain.address.clone(),
            How::Client(..) => unreachable!(),
        };
        drop(first);
        let idle = |c: &Connections| c.kept_for(&address);
        assert!(idle(&connections).is_some());
        drop(second);
        assert!(idle(&connections).is_none(), "the idle connections go with the last prober");
        // Another address gets its own.
        let elsewhere = service("/heartbeat", |_, _| (OK.into(), false)).await;
        assert_eq!(probe(&mut Probe::new(&elsewhere.url, None, &connections)).await, Ok(()));
        assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 1);
    }
}
