//! A small etcd v3 client on tonic: the calls of [`pb`](super::pb), several endpoints with
//! failover, and user/password authentication.
//!
//! Contract:
//! - **Endpoints.** One lazily connected HTTP/2 channel per endpoint (`http://`, `https://`,
//!   or a bare `host:port`, which is https when TLS files are given). Requests go to one
//!   member, the current one, until it fails:
//!   - a request that could not reach it (connection refused or timed out, TLS handshake
//!     failed) never left, so it goes on at once to the next member, each tried once per call;
//!   - a request the member failed otherwise (`Unavailable`: no leader, stopping; timed out;
//!     connection lost mid-call) may or may not have been applied, so a write is not resent:
//!     the call fails and the next request goes to the next member. A read
//!     ([`Client::read`]: `Range`, which changes nothing) and the opening of a watch are
//!     resent to the next member at once, each member tried once per call: a member cut off
//!     from the quorum cannot serve a linearizable read (it times out or answers "no leader"),
//!     and the read must not fail while another member can answer it.
//!
//!   A failover list, not a balancer: all requests use one member while it works, and a dead
//!   member is skipped.
//! - **Authentication.** With a user name, `Authenticate(user, password)` gives a token that
//!   every call carries as `token` metadata. When etcd refuses the token (invalid or expired:
//!   `--auth-token-ttl`, a restarted member, an auth store revision that moved on), the
//!   client authenticates again, once, and resends: a refused call was not applied.
//!   Concurrent calls that meet the same refused token authenticate once between them.
//! - **Watches** carry `hasleader: true` (etcd's `WithRequireLeader`): a member cut off from
//!   the quorum ends the stream with `Unavailable` instead of serving a stale view. The caller
//!   reconnects ([`Client::move_on`] first), which lands on the next member.
//! - **Errors** ([`EtcdError`]) name the endpoint, say what etcd or the transport said, and
//!   what to check.
//!
//! Everything here is async and runs on the store's runtime; channels must be made inside it
//! (tonic spawns their workers), which [`EtcdStore`](super::EtcdStore) does.

use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio_stream::StreamExt as _;
use tonic::client::Grpc;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::pb::{
    AuthenticateRequest, Method, WatchCreateRequest, WatchRequest, WatchRequestUnion,
    WatchResponse, AUTHENTICATE, WATCH,
};

/// An authentication token, as sent in the `token` metadata.
type Token = AsciiMetadataValue;

/// HTTP/2 pings keep an idle connection known to be alive (a watch waits for hours).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// A ping unanswered this long ends the connection (and the watch on it).
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The user name and password for etcd's authentication.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One etcd member: its endpoint as given and its channel.
struct Member {
    endpoint: String,
    channel: Channel,
}

/// The etcd client (see the module documentation).
pub(crate) struct Client {
    members: Vec<Member>,
    /// The member requests go to.
    current: AtomicUsize,
    credentials: Option<Credentials>,
    token: Mutex<Option<Token>>,
    /// One re-authentication at a time.
    authenticating: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<&str> = self.members.iter().map(|m| m.endpoint.as_str()).collect();
        f.debug_struct("Client")
            .field("endpoints", &endpoints)
            .field("current", &self.current)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// An open watch stream.
pub(crate) struct Watching {
    pub(crate) stream: Streaming<WatchResponse>,
    /// The member that serves it.
    pub(crate) member: usize,
    /// The token it was opened with.
    token: Option<Token>,
}

impl Client {
    /// Builds the channels (no connection is made yet). Must run inside the tokio runtime.
    /// `tls` applies to the https endpoints; an `http://` endpoint with TLS files given is
    /// an error, as a plaintext connection would silently ignore them.
    pub(crate) fn new(
        endpoints: &[String],
        tls: Option<ClientTlsConfig>,
        timeout: Duration,
        credentials: Option<Credentials>,
    ) -> Result<Client, String> {
        if endpoints.is_empty() {
            return Err("no etcd endpoint given".to_owned());
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let url = match endpoint.split_once("://") {
                Some(("http", _)) if tls.is_some() => {
                    return Err(format!(
                        "etcd endpoint {endpoint} is http:// but TLS files are given \
                         (--etcd-cafile, --etcd-certfile, --etcd-keyfile): use https://"
                    ))
                }
                Some(("http" | "https", _)) => endpoint.clone(),
                Some(_) => {
                    return Err(format!(
                        "etcd endpoint {endpoint}: the scheme must be http:// or https://"
                    ))
                }
                None if tls.is_some() => format!("https://{endpoint}"),
                None => format!("http://{endpoint}"),
            };
            let mut builder = Endpoint::from_shared(url)
                .map_err(|e| format!("etcd endpoint {endpoint} is not a URL: {e}"))?
                .timeout(timeout)
                .connect_timeout(timeout)
                .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                .keep_alive_while_idle(true);
            if builder.uri().scheme_str() == Some("https") {
                // Without a CA file nothing is trusted and the handshake fails, with a hint.
                let tls = tls.clone().unwrap_or_default();
                builder = builder.tls_config(tls).map_err(|e| {
                    format!("etcd endpoint {endpoint}: the TLS files are unusable: {e}")
                })?;
            }
            members.push(Member {
                endpoint: endpoint.clone(),
                channel: builder.connect_lazy(),
            });
        }
        Ok(Client {
            members,
            current: AtomicUsize::new(0),
            credentials,
            token: Mutex::new(None),
            authenticating: tokio::sync::Mutex::new(()),
        })
    }

    /// The endpoint of `member` (from [`Watching::member`]).
    pub(crate) fn endpoint(&self, member: usize) -> &str {
        &self.members[member % self.members.len()].endpoint
    }

    /// One unary call that may change the store: resent to another member only when it
    /// never reached the first.
    pub(crate) async fn call<Req, Resp>(
        &self,
        method: &'static Method<Req, Resp>,
        message: Req,
    ) -> Result<Resp, EtcdError>
    where
        Req: prost::Message + Clone + 'static,
        Resp: prost::Message + Default + 'static,
    {
        let (response, _) = self
            .authorized(Resend::Unsent, |channel, token| {
                unary(channel, method, message.clone(), token)
            })
            .await?;
        Ok(response)
    }

    /// One unary call that changes nothing (a `Range`): resent to the next member whenever
    /// a member fails it.
    pub(crate) async fn read<Req, Resp>(
        &self,
        method: &'static Method<Req, Resp>,
        message: Req,
    ) -> Result<Resp, EtcdError>
    where
        Req: prost::Message + Clone + 'static,
        Resp: prost::Message + Default + 'static,
    {
        let (response, _) = self
            .authorized(Resend::MemberFailed, |channel, token| {
                unary(channel, method, message.clone(), token)
            })
            .await?;
        Ok(response)
    }

    /// Opens a watch stream and sends `create` on it.
    pub(crate) async fn watch(&self, create: WatchCreateRequest) -> Result<Watching, EtcdError> {
        let request = WatchRequest {
            request_union: Some(WatchRequestUnion::CreateRequest(create)),
        };
        let ((stream, token), member) = self
            .authorized(Resend::MemberFailed, |channel, token| {
                let request = request.clone();
                async move {
                    let stream = open_watch(channel, request, token.clone()).await?;
                    Ok((stream, token))
                }
            })
            .await?;
        Ok(Watching {
            stream,
            member,
            token,
        })
    }

    /// Authenticates with the credentials, if any, and keeps the token for every call.
    pub(crate) async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        let request = AuthenticateRequest {
            name: credentials.user.clone(),
            password: credentials.password.clone(),
        };
        let (response, member) = self
            .send(
                Resend::MemberFailed,
                &mut |channel, _| unary(channel, &AUTHENTICATE, request.clone(), None),
                None,
            )
            .await?;
        let token = response.token.parse::<Token>().map_err(|e| EtcdError {
            endpoint: self.endpoint(member).to_owned(),
            status: Status::internal(format!(
                "etcd answered Authenticate with a token that is not valid metadata: {e}"
            )),
        })?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
        Ok(())
    }

    /// Authenticates again after etcd refused the token of `watching` (the watch was
    /// canceled for it).
    pub(crate) async fn token_refused(&self, watching: &Watching) -> Result<(), EtcdError> {
        self.reauthenticate(watching.token.clone()).await
    }

    /// Sends the next requests to the member after `member`, which failed (unless another
    /// failure moved on already).
    pub(crate) fn move_on(&self, member: usize) {
        let count = self.members.len();
        let next = (member + 1) % count;
        if count > 1
            && self
                .current
                .compare_exchange(member, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "etcd: {} failed; the next requests go to {}",
                self.members[member].endpoint,
                self.members[next].endpoint
            );
        }
    }

    fn token(&self) -> Option<Token> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// [`Client::send`] with the current token; when etcd refuses it, authenticates again
    /// and sends once more.
    async fn authorized<T, F, Fut>(
        &self,
        resend: Resend,
        mut attempt: F,
    ) -> Result<(T, usize), EtcdError>
    where
        F: FnMut(Channel, Option<Token>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let token = self.token();
        match self.send(resend, &mut attempt, token.clone()).await {
            Err(e) if self.credentials.is_some() && refuses_token(&e.status) => {
                tracing::debug!("etcd: {e}; authenticating again");
                self.reauthenticate(token).await?;
                self.send(resend, &mut attempt, self.token()).await
            }
            result => result,
        }
    }

    /// Authenticates again unless another call already replaced the `refused` token.
    async fn reauthenticate(&self, refused: Option<Token>) -> Result<(), EtcdError> {
        let _one_at_a_time = self.authenticating.lock().await;
        if self.token() != refused {
            return Ok(());
        }
        self.authenticate().await
    }

    /// Makes one `attempt` on the current member, and on the next ones while the request
    /// could not reach them (see the module documentation). Returns the answer and the
    /// member that gave it.
    async fn send<T, F, Fut>(
        &self,
        resend: Resend,
        attempt: &mut F,
        token: Option<Token>,
    ) -> Result<(T, usize), EtcdError>
    where
        F: FnMut(Channel, Option<Token>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let count = self.members.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut tried = 0;
        loop {
            let index = (first + tried) % count;
            let member = &self.members[index];
            let status = match attempt(member.channel.clone(), token.clone()).await {
                Ok(value) => return Ok((value, index)),
                Err(status) => status,
            };
            tried += 1;
            if member_failed(&status) {
                self.move_on(index);
            }
            if resend.allows(&status) && tried < count {
                tracing::debug!(
                    "etcd: {} failed the request ({}); trying the next endpoint",
                    member.endpoint,
                    describe(&status)
                );
                continue;
            }
            return Err(EtcdError {
                endpoint: member.endpoint.clone(),
                status,
            });
        }
    }
}

/// Which failed requests go on to the next member within the same call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Only those that never reached the member (a write may have been applied otherwise).
    Unsent,
    /// Also those the member failed ([`member_failed`]): reads, watches, authentication,
    /// which change nothing when applied twice.
    MemberFailed,
}

impl Resend {
    /// Whether a request that failed with `status` goes on to the next member.
    fn allows(self, status: &Status) -> bool {
        match self {
            Resend::Unsent => never_sent(status),
            Resend::MemberFailed => never_sent(status) || member_failed(status),
        }
    }
}

/// Adds the `token` metadata to a request.
fn authorize<T>(request: &mut Request<T>, token: Option<Token>) {
    if let Some(token) = token {
        request.metadata_mut().insert("token", token);
    }
}

/// One unary call on one channel.
async fn unary<Req, Resp>(
    channel: Channel,
    method: &'static Method<Req, Resp>,
    message: Req,
    token: Option<Token>,
) -> Result<Resp, Status>
where
    Req: prost::Message + 'static,
    Resp: prost::Message + Default + 'static,
{
    let mut grpc = Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    let mut request = Request::new(message);
    authorize(&mut request, token);
    grpc.unary(
        request,
        PathAndQuery::from_static(method.path),
        ProstCodec::<Req, Resp>::default(),
    )
    .await
    .map(Response::into_inner)
}

/// Opens a watch stream on one channel.
async fn open_watch(
    channel: Channel,
    create: WatchRequest,
    token: Option<Token>,
) -> Result<Streaming<WatchResponse>, Status> {
    let mut grpc = Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    // The request side stays open for the stream's life: one create request, then nothing.
    let requests = tokio_stream::iter([create]).chain(tokio_stream::pending());
    let mut request = Request::new(requests);
    authorize(&mut request, token);
    // etcd's WithRequireLeader: a member without a leader ends the stream.
    request
        .metadata_mut()
        .insert("hasleader", AsciiMetadataValue::from_static("true"));
    grpc.streaming(
        request,
        PathAndQuery::from_static(WATCH.path),
        ProstCodec::<WatchRequest, WatchResponse>::default(),
    )
    .await
    .map(Response::into_inner)
}

/// Whether the request never reached the member (no connection could be made).
fn never_sent(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether the member, rather than the request, failed: etcd's `Unavailable` (no leader,
/// stopping, overloaded), a deadline, or any failure of the transport (a status made on our
/// side carries its cause; etcd's own answers carry none).
fn member_failed(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) || status.source().is_some()
}

/// Whether etcd refused the token (invalid, expired, or older than the auth store), so
/// authenticating again helps. As etcd's Go client decides (`shouldRefreshToken`).
fn refuses_token(status: &Status) -> bool {
    status.code() == Code::Unauthenticated || token_refusal(status.message())
}

/// Whether etcd's words (an error message or a watch's cancel reason) refuse the token.
pub(crate) fn token_refusal(text: &str) -> bool {
    text.contains("invalid auth token") || text.contains("revision of auth store is old")
}

/// The status's message and the chain of causes under it, each said once.
fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = status.source();
    while let Some(e) = source {
        let cause = e.to_string();
        if !cause.is_empty() && !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
        source = e.source();
    }
    if text.is_empty() {
        text = "no message".to_owned();
    }
    text
}

/// What to check, for a failed call to `endpoint`.
fn hint(status: &Status, endpoint: &str) -> Option<&'static str> {
    let text = describe(status).to_ascii_lowercase();
    let tls_words = ["certificate", "tls", "handshake", "alert", "unknownissuer"];
    if endpoint.starts_with("https") && tls_words.iter().any(|w| text.contains(w)) {
        return Some(
            "check --etcd-cafile (the CA that signed etcd's certificate), --etcd-certfile and \
             --etcd-keyfile (a client certificate etcd trusts)",
        );
    }
    if text.contains("authentication is not enabled") {
        return Some(
            "etcd has authentication off: drop --etcd-username and --etcd-password, or turn \
             it on (etcdctl auth enable)",
        );
    }
    if token_refusal(&text)
        || text.contains("user name is empty")
        || text.contains("authentication failed")
        || status.code() == Code::Unauthenticated
    {
        return Some("check --etcd-username and --etcd-password");
    }
    if status.code() == Code::PermissionDenied {
        return Some(
            "give the etcd user a role with read-write access to the prefix (etcdctl role \
             grant-permission --prefix)",
        );
    }
    if never_sent(status) {
        return Some("is etcd running and listening there? check --etcd-endpoints");
    }
    if timed_out(status) {
        return Some(
            "etcd did not answer within the request timeout: is the member overloaded or cut \
             off? the next request goes to the next endpoint",
        );
    }
    if endpoint.starts_with("https") && status.source().is_some() {
        return Some(
            "the connection broke; etcd also ends TLS connections whose client certificate it \
             does not trust: check --etcd-certfile and --etcd-keyfile, and the cluster \
             (etcdctl endpoint health); the next request goes to the next endpoint",
        );
    }
    if member_failed(status) {
        return Some(
            "the member has no leader, is stopping, or the connection broke; the next request \
             goes to the next endpoint; check the cluster (etcdctl endpoint health)",
        );
    }
    None
}

/// Whether the call ran out of time (tonic's request timeout, or etcd's own deadline).
fn timed_out(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    status.code() == Code::DeadlineExceeded
}

/// Why an etcd call failed: the endpoint it went to, and what etcd answered or why it could
/// not be reached. The message says all of it and what to check, so there is no separate
/// source (a chain printed with `{:#}` would repeat it).
#[derive(Debug)]
pub struct EtcdError {
    endpoint: String,
    status: Status,
}

impl EtcdError {
    /// The endpoint the call went to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({:?})",
            self.endpoint,
            describe(&self.status),
            self.status.code()
        )?;
        if let Some(hint) = hint(&self.status, &self.endpoint) {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EtcdError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(endpoint: &str, status: Status) -> String {
        EtcdError {
            endpoint: endpoint.to_owned(),
            status,
        }
        .to_string()
    }

    #[test]
    fn errors_name_the_endpoint_and_what_to_check() {
        let refused = Status::from_error(Box::new(tonic::ConnectError(Box::new(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ))));
        assert!(never_sent(&refused) && member_failed(&refused));
        let text = error("http://10.0.0.1:2379", refused);
        assert!(
            text.starts_with("http://10.0.0.1:2379: ")
                && text.contains("refused")
                && text.contains("--etcd-endpoints"),
            "{text}"
        );
        let no_user = Status::invalid_argument("etcdserver: user name is empty");
        assert!(!member_failed(&no_user) && !refuses_token(&no_user));
        let text = error("http://10.0.0.1:2379", no_user);
        assert!(text.contains("--etcd-username"), "{text}");
        let no_leader = Status::unavailable("etcdserver: no leader");
        assert!(member_failed(&no_leader) && !never_sent(&no_leader));
        assert!(error("e", no_leader).contains("next endpoint"));
        let bad_ca = Status::unavailable("invalid peer certificate: UnknownIssuer");
        assert!(error("https://e:2379", bad_ca).contains("--etcd-cafile"));
        let timeout = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert!(timed_out(&timeout) && member_failed(&timeout));
        assert!(error("e", timeout).contains("request timeout"));
    }

    #[test]
    fn only_requests_that_change_nothing_are_resent_after_a_member_failed() {
        let refused = Status::from_error(Box::new(tonic::ConnectError(Box::new(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ))));
        // What a member cut off from the quorum answers a linearizable read: etcd's
        // ErrGRPCNoLeader, its request timeout, or our own deadline.
        let no_leader = Status::unavailable("etcdserver: no leader");
        let etcd_timeout = Status::unavailable("etcdserver: request timed out");
        let deadline = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        for status in [&refused, &no_leader, &etcd_timeout, &deadline] {
            assert!(Resend::MemberFailed.allows(status), "{status:?}");
        }
        assert!(Resend::Unsent.allows(&refused));
        for status in [&no_leader, &etcd_timeout, &deadline] {
            assert!(!Resend::Unsent.allows(status), "{status:?}");
        }
        // An answer about the request itself is the same on every member.
        let denied = Status::permission_denied("etcdserver: permission denied");
        assert!(!Resend::MemberFailed.allows(&denied));
        assert!(!Resend::Unsent.allows(&denied));
    }

    #[test]
    fn token_refusals_are_recognised() {
        assert!(refuses_token(&Status::unauthenticated(
            "etcdserver: invalid auth token"
        )));
        assert!(refuses_token(&Status::invalid_argument(
            "etcdserver: revision of auth store is old"
        )));
        assert!(token_refusal(
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
        ));
        assert!(!refuses_token(&Status::permission_denied(
            "etcdserver: permission denied"
        )));
    }

    #[test]
    fn endpoints_are_checked() {
        // Channels spawn their workers on the runtime they are made in.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _inside = runtime.enter();
        let tls = Some(ClientTlsConfig::new());
        let t = Duration::from_secs(1);
        let e = Client::new(&["http://127.0.0.1:2379".to_owned()], tls.clone(), t, None)
            .expect_err("http with TLS files");
        assert!(e.contains("https://"), "{e}");
        let e = Client::new(&["unix:///x".to_owned()], None, t, None).expect_err("scheme");
        assert!(e.contains("http://"), "{e}");
        assert!(Client::new(&[], None, t, None).is_err());
        let c = Client::new(
            &[
                "127.0.0.1:2379".to_owned(),
                "https://127.0.0.2:2379".to_owned(),
            ],
            tls,
            t,
            None,
        )
        .expect("bare host:port and https");
        assert_eq!(c.endpoint(1), "https://127.0.0.2:2379");
        // Failover moves on from the failed member only.
        c.move_on(1);
        assert_eq!(c.current.load(Ordering::Relaxed), 0);
        c.move_on(0);
        assert_eq!(c.current.load(Ordering::Relaxed), 1);
        c.move_on(1);
        assert_eq!(c.current.load(Ordering::Relaxed), 0);
    }
}
