//! The HTTP endpoint of `tracer serve` (hyper, HTTP/1.1, on the serve's own thread):
//!
//! - `GET /metrics`: the Prometheus text exposition (`crate::metrics`) of every target
//!   traced now and of those ended within the grace period;
//! - `GET /debug/pprof/contention?seconds=N`: a gzipped pprof profile of the lock waits
//!   of the next N seconds (default [`DEFAULT_PROFILE_SECONDS`]) in every target, with
//!   Go's sample types, as `go tool pprof` and continuous profilers fetch it;
//! - `GET /healthz`: `ok`.

use std::{cell::RefCell, convert::Infallible, rc::Rc, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_DISPOSITION, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, oneshot},
};

use super::ServeState;
use crate::{
    metrics::{self, TracerState},
    model::{live::TargetSnapshot, profile::ContentionProfile},
    session::LiveRequest,
    target,
};

/// A profile's window when the request gives no `seconds`.
pub(super) const DEFAULT_PROFILE_SECONDS: u64 = 10;
/// The longest window a request may ask for.
const MAX_PROFILE_SECONDS: u64 = 600;
/// How long a session may take to answer a snapshot before the scrape goes on without it
/// (a session attaching to a large program is busy for a moment).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more wait to be accepted. Bounds the memory a flood of
/// connections can take.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, state: Rc<RefCell<ServeState>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or the like: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let state = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            let service = service_fn(move |request| respond(request, Rc::clone(&state)));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    state: Rc<RefCell<ServeState>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET\n".to_owned(),
        ));
    }
    let response = match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/metrics" => metrics_response(&state).await,
        "/debug/pprof/contention" => match profile_seconds(request.uri().query()) {
            Ok(seconds) => profile_response(&state, seconds).await,
            Err(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
        },
        "/" => text(
            StatusCode::OK,
            "tracer serve: /metrics, /debug/pprof/contention?seconds=N, /healthz\n".to_owned(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    Ok(response)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The `seconds` of a profile request's query string.
fn profile_seconds(query: Option<&str>) -> Result<u64, String> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("seconds="))
    else {
        return Ok(DEFAULT_PROFILE_SECONDS);
    };
    match value.parse::<u64>() {
        Ok(seconds @ 1..=MAX_PROFILE_SECONDS) => Ok(seconds),
        _ => Err(format!(
            "seconds must be a whole number of seconds from 1 to {MAX_PROFILE_SECONDS}"
        )),
    }
}

/// Asks every traced target a question made by `ask`, and returns the receivers of the
/// answers.
fn ask_all<T>(
    state: &Rc<RefCell<ServeState>>,
    ask: impl Fn(oneshot::Sender<T>) -> LiveRequest,
) -> Vec<oneshot::Receiver<T>> {
    let shared = state.borrow();
    shared
        .targets
        .traced_now()
        .filter_map(|(_, _, requests)| {
            let (reply, answer) = oneshot::channel();
            requests.send(ask(reply)).ok().map(|()| answer)
        })
        .collect()
}

async fn metrics_response(state: &Rc<RefCell<ServeState>>) -> Response<Full<Bytes>> {
    let answers = ask_all(state, LiveRequest::Snapshot);
    let mut snapshots: Vec<TargetSnapshot> = Vec::with_capacity(answers.len());
    let deadline = tokio::time::Instant::now() + SNAPSHOT_TIMEOUT;
    for answer in answers {
        if let Ok(Ok(snapshot)) = tokio::time::timeout_at(deadline, answer).await {
            snapshots.push(snapshot);
        }
    }
    let shared = state.borrow();
    snapshots.extend(shared.targets.ended_snapshots().cloned());
    snapshots.sort_by_key(|s| (s.pid, !s.attached));
    let usage = target::procfs_self_usage();
    let tracer = TracerState {
        targets_attached: u64::try_from(shared.targets.traced_count()).unwrap_or(u64::MAX),
        cpu_seconds: usage.as_ref().map_or(0.0, |u| u.cpu_seconds),
        resident_bytes: usage.as_ref().map_or(0, |u| u.resident_bytes),
        version: env!("CARGO_PKG_VERSION"),
        targets_refused_total: shared.refused,
        attaches_total: shared.attaches,
        sched_switch_duty_factor: u64::from(crate::probes::hook_state().factor),
    };
    drop(shared);
    match metrics::render(&snapshots, &tracer) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}\n", crate::error_chain(&err)),
        ),
    }
}

async fn profile_response(state: &Rc<RefCell<ServeState>>, seconds: u64) -> Response<Full<Bytes>> {
    let duration = Duration::from_secs(seconds);
    let answers = ask_all(state, |reply| LiveRequest::Profile { duration, reply });
    let started = std::time::SystemTime::now();
    let mut profile = ContentionProfile {
        start_unix_ns: started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        duration_ns: duration.as_nanos().try_into().unwrap_or(u64::MAX),
        ..ContentionProfile::default()
    };
    // Each session sends its window's waits when the window ends (sooner if its target
    // exits); one that cannot (still attaching, or over its budget of windows) is left
    // out with a comment.
    let deadline = tokio::time::Instant::now() + duration + SNAPSHOT_TIMEOUT;
    let mut missing = 0;
    for answer in answers {
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(part)) => {
                profile.samples.extend(part.samples);
                for comment in part.comments {
                    if !profile.comments.contains(&comment) {
                        profile.comments.push(comment);
                    }
                }
            }
            _ => missing += 1,
        }
    }
    if missing > 0 {
        profile.comments.push(format!(
            "{missing} target(s) gave no profile for this window"
        ));
    }
    match crate::pprof::encode_gzipped(&profile) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/octet-stream"),
            );
            response.headers_mut().insert(
                CONTENT_DISPOSITION,
                hyper::header::HeaderValue::from_static("attachment; filename=\"contention\""),
            );
            response
        }
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}\n", crate::error_chain(&err)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the profile window asked in the query: the default without `seconds`, and
    /// a clear refusal of a bad or excessive one rather than a window of hours.
    #[test]
    fn profile_seconds_come_from_the_query() {
        assert_eq!(profile_seconds(None), Ok(DEFAULT_PROFILE_SECONDS));
        assert_eq!(profile_seconds(Some("debug=1&seconds=3")), Ok(3));
        assert!(profile_seconds(Some("seconds=0")).is_err());
        assert!(profile_seconds(Some("seconds=abc")).is_err());
        assert!(profile_seconds(Some("seconds=100000")).is_err());
    }
}
