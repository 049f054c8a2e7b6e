//! Prometheus metrics: one recorder per process, `GET /metrics` on every
//! service, and the per-route request counts and latencies that the
//! finishing middleware (`http::finish_router`) records.
//! Domain metrics are recorded where things happen (see the `metrics::`
//! calls in each service).

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, in seconds: from half a millisecond to five seconds.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the process's recorder (once; later calls return the same).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            // The exporter keeps histogram samples until rendered; drain them
            // even when nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render() -> Response {
    let body = install().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Counts a request and records its latency, by method, route and status.
pub(crate) fn record(method: &Method, route: &str, status: StatusCode, latency: Duration) {
    let method = method_label(method);
    // Registering a series by name and labels allocates and hashes; the
    // handles it returns stay valid, so each thread keeps the ones it has
    // used and finds them again with a few comparisons.
    SERIES.with_borrow_mut(|series| {
        let known = series.iter().position(|s| s.status == status && s.method == method && &*s.route == route);
        let index = known.unwrap_or_else(|| {
            series.push(Series::register(method, route, status));
            series.len() - 1
        });
        let series = &series[index];
        series.requests.increment(1);
        series.latency.record(latency.as_secs_f64());
    });
}

/// Any token is a method: the ones no route can serve (answered 405) share
/// one label, so strangers cannot grow the series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

thread_local! {
    static SERIES: std::cell::RefCell<Vec<Series>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The handles of one method, route and status.
struct Series {
    method: &'static str,
    route: Box<str>,
    status: StatusCode,
    requests: metrics::Counter,
    latency: metrics::Histogram,
}

impl Series {
    fn register(method: &'static str, route: &str, status: StatusCode) -> Self {
        let labels =
            [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.as_u16().to_string())];
        Self {
            method,
            route: route.into(),
            status,
            requests: metrics::counter!("http_requests_total", &labels),
            latency: metrics::histogram!("http_request_duration_seconds", &labels),
        }
    }
}
