//! The HTTP client of completion webhooks (issue 12): one signed JSON POST per delivery attempt
//! to the `webhook_url` a client gave, and the check of that URL when a task is submitted.
//!
//! The destination rules ([`taskfleet_core::completion::destination`]) are applied at both ends:
//!
//! - **At submit**, [`SubmitCheck::check`] reads the URL and resolves its host:
//!   every address it resolves to must be one that may be called.
//! - **At delivery**, the stored URL is read again, and the client resolves host names only
//!   through [`CheckedResolver`], which hands the connection nothing but addresses that pass the
//!   rules. A name rebound to a private address after the submit check (DNS rebinding) leaves
//!   the connection no address to use, so no request leaves for it.
//!
//! Redirects are never followed (a 3xx would re-send the signed body elsewhere) and count as a
//! failed attempt, as do any other non-2xx answer, a timeout and a network error. No proxy is
//! used: a proxy would resolve the host itself, past the rules. The reason of a failure goes to
//! the task's history, so it is short and holds neither the URL (its query may carry a token)
//! nor anything of the response; the response body is never read.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use taskfleet_core::completion::delivery::Outcome;
use taskfleet_core::completion::destination::{Destination, DestinationError, Rules};
use taskfleet_core::ports::WebhookSender;
use taskfleet_core::signing::{self, Signed};
use thiserror::Error;

/// How long one delivery attempt may take, answer included, unless configured otherwise.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting to a receiver may take, at most (and never more than the attempt's
/// timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the submit check waits for a host name to resolve.
pub const SUBMIT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `user-agent` of every delivery.
pub const WEBHOOK_USER_AGENT: &str = "taskfleet-webhooks";

/// Why a host name gave the delivery client no address to connect to.
#[derive(Debug, Error)]
pub enum ResolveError {
    /// Every address the name resolved to is one the rules refuse; holds the first of them.
    #[error("destination refused: {0}")]
    Refused(DestinationError),
    /// The lookup itself failed.
    #[error("the host name did not resolve: {0}")]
    Lookup(#[source] io::Error),
    /// The lookup succeeded with no address.
    #[error("the host name resolved to no address")]
    NoAddress,
}

/// The delivery client's resolver: resolves with the system resolver (tokio's `lookup_host`) and
/// keeps only the addresses the rules allow. Holds the rules.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver {
    rules: Rules,
}

impl CheckedResolver {
    /// A resolver applying `rules`.
    pub fn new(rules: Rules) -> Self {
        Self { rules }
    }

    /// The addresses `host` resolves to that may be called (port 0: the URL's port applies); an
    /// error when there is none, naming a refused address if the name resolved to some.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let resolved: Vec<SocketAddr> =
            tokio::net::lookup_host((host, 0)).await.map_err(ResolveError::Lookup)?.collect();
        let first = resolved.first().copied().ok_or(ResolveError::NoAddress)?;
        let allowed: Vec<SocketAddr> =
            resolved.into_iter().filter(|address| self.rules.check_address(address.ip()).is_ok()).collect();
        if allowed.is_empty() {
            return Err(self
                .rules
                .check_address(first.ip())
                .err()
                .map_or(ResolveError::NoAddress, ResolveError::Refused));
        }
        Ok(allowed)
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolver.resolve_checked(&host).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// Why a `webhook_url` is not accepted at submit.
#[derive(Debug, Error)]
pub enum SubmitCheckError {
    /// The URL may not be called (a client error: 400): bad, not https, local or non-public.
    #[error(transparent)]
    Refused(#[from] DestinationError),
    /// The host name does not exist (a client error: 400).
    #[error("`webhook_url` names a host that does not resolve")]
    UnknownHost,
    /// The host name could not be resolved now (transient: 503); holds why.
    #[error("`webhook_url`'s host could not be resolved now: {0}")]
    Unresolved(String),
}

impl SubmitCheckError {
    /// Whether the same URL may pass later (the API answers 503 rather than 400).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unresolved(_))
    }
}

/// The check of a `webhook_url` at submit (ingest): no HTTP client, only the rules and the
/// system resolver.
#[derive(Debug, Clone, Copy)]
pub struct SubmitCheck {
    rules: Rules,
}

impl SubmitCheck {
    pub fn new(rules: Rules) -> Self {
        Self { rules }
    }

    /// The rules it applies.
    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// Checks a submitted `webhook_url`: the rules, then every address its host name resolves to.
    /// The URL as it will be stored (normalised).
    pub async fn check(&self, url: &str) -> Result<String, SubmitCheckError> {
        let destination = Destination::parse(url, self.rules)?;
        if let Some(host) = destination.host_name() {
            for address in lookup_at_submit(host).await? {
                self.rules.check_address(address.ip())?;
            }
        }
        Ok(destination.as_str().to_owned())
    }
}

/// The client could not be built.
#[derive(Debug, Error)]
#[error("cannot build the completion webhooks' HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// Sends completion webhooks; built once per cold start. Holds the HTTP client (its connection
/// pool and TLS roots), the destination rules and the attempt's timeout.
#[derive(Debug, Clone)]
pub struct CompletionSender {
    client: reqwest::Client,
    rules: Rules,
    timeout: Duration,
    connect_timeout: Duration,
}

impl CompletionSender {
    /// A sender whose attempts take at most `timeout` each and call only what `rules` allow.
    pub fn new(rules: Rules, timeout: Duration) -> Result<Self, ClientBuildError> {
        let connect_timeout = timeout.min(CONNECT_TIMEOUT);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .dns_resolver(Arc::new(CheckedResolver::new(rules)))
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self { client, rules, timeout, connect_timeout })
    }

    /// The rules the sender applies.
    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// The reason a request that got no answer failed, for the task's history.
    fn reason(&self, error: &reqwest::Error) -> String {
        if let Some(resolve) = find_source::<ResolveError>(error) {
            return match resolve {
                ResolveError::Refused(_) => resolve.to_string(),
                ResolveError::Lookup(_) | ResolveError::NoAddress => "the host name did not resolve".to_owned(),
            };
        }
        match (error.is_timeout(), error.is_connect()) {
            (true, true) => format!("connection timed out after {}", human(self.connect_timeout)),
            (true, false) => format!("timed out after {}", human(self.timeout)),
            (false, true) => "connection failed".to_owned(),
            (false, false) => "request failed".to_owned(),
        }
    }
}

/// The outcome of an answer with `status`.
fn outcome_of(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status.is_redirection() {
        Outcome::Failed(format!("HTTP {} (redirects are not followed)", status.as_u16()))
    } else {
        Outcome::Failed(format!("HTTP {}", status.as_u16()))
    }
}

/// The addresses `host` resolves to, within [`SUBMIT_RESOLVE_TIMEOUT`].
async fn lookup_at_submit(host: &str) -> Result<Vec<SocketAddr>, SubmitCheckError> {
    let lookup = tokio::net::lookup_host((host, 0));
    let resolved = tokio::time::timeout(SUBMIT_RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| SubmitCheckError::Unresolved(format!("timed out after {}", human(SUBMIT_RESOLVE_TIMEOUT))))?
        .map_err(|error| classify_lookup_error(&error))?;
    let addresses: Vec<SocketAddr> = resolved.collect();
    if addresses.is_empty() { Err(SubmitCheckError::UnknownHost) } else { Ok(addresses) }
}

/// Messages of the system resolver (`gai_strerror`: glibc, musl, BSD) that say the name does not
/// exist, rather than that it could not be resolved now.
const UNKNOWN_HOST_MESSAGES: [&str; 4] = [
    "Name or service not known",
    "No address associated with hostname",
    "Name does not resolve",
    "nodename nor servname provided",
];

/// Whether a failed lookup says the name does not exist (the submitter's error) or not now.
fn classify_lookup_error(error: &io::Error) -> SubmitCheckError {
    let message = error.to_string();
    if UNKNOWN_HOST_MESSAGES.iter().any(|known| message.contains(known)) {
        SubmitCheckError::UnknownHost
    } else {
        SubmitCheckError::Unresolved(message)
    }
}

/// The first error of type `T` in `error`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// A duration as a reason shows it: `5 s`, or `250 ms` below a whole second.
fn human(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

impl WebhookSender for CompletionSender {
    /// One delivery attempt: POSTs `body`, signed as `signed` says, to `url`, read again with the
    /// rules first. Never fails otherwise than with a [`Outcome::Failed`] reason.
    async fn send(&self, url: &str, signed: &Signed, body: Vec<u8>) -> Outcome {
        let destination = match Destination::parse(url, self.rules) {
            Ok(destination) => destination,
            Err(refused) => return Outcome::Failed(format!("destination refused: {refused}")),
        };
        let request = self
            .client
            .post(destination.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, WEBHOOK_USER_AGENT)
            .header(signing::ID, &signed.id)
            .header(signing::TIMESTAMP, &signed.timestamp)
            .header(signing::SIGNATURE, &signed.signature)
            .body(body);
        match request.send().await {
            // The response is dropped unread: only its status matters.
            Ok(response) => outcome_of(response.status()),
            Err(error) => Outcome::Failed(self.reason(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    #[test]
    fn only_2xx_delivers_and_a_redirect_says_it_was_not_followed() {
        assert_eq!(outcome_of(StatusCode::NO_CONTENT), Outcome::Delivered);
        assert_eq!(outcome_of(StatusCode::OK), Outcome::Delivered);
        assert_eq!(outcome_of(StatusCode::INTERNAL_SERVER_ERROR), Outcome::Failed("HTTP 500".into()));
        assert_eq!(outcome_of(StatusCode::NOT_FOUND), Outcome::Failed("HTTP 404".into()));
        assert_eq!(outcome_of(StatusCode::FOUND), Outcome::Failed("HTTP 302 (redirects are not followed)".into()));
    }

    #[test]
    fn a_name_that_does_not_exist_is_the_submitters_error_and_anything_else_is_transient() {
        let lookup = |detail: &str| io::Error::other(format!("failed to lookup address information: {detail}"));
        assert!(matches!(classify_lookup_error(&lookup("Name or service not known")), SubmitCheckError::UnknownHost));
        assert!(matches!(classify_lookup_error(&lookup("Name does not resolve")), SubmitCheckError::UnknownHost));
        let transient = classify_lookup_error(&lookup("Temporary failure in name resolution"));
        assert!(transient.is_transient(), "{transient}");
        assert!(!SubmitCheckError::UnknownHost.is_transient());
        assert!(!SubmitCheckError::Refused(DestinationError::Scheme).is_transient());
    }

    /// An error around another, as the HTTP client's layers wrap the resolver's.
    #[derive(Debug, Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] ResolveError);

    #[test]
    fn a_refused_resolution_is_found_however_deep_it_is_wrapped() {
        let refused = ResolveError::Refused(DestinationError::NotPublic(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let wrapped = Wrapped(refused);
        let found = find_source::<ResolveError>(&wrapped).map(ToString::to_string);
        assert_eq!(
            found.as_deref(),
            Some("destination refused: `webhook_url` points at a non-public address (127.0.0.1)")
        );
        assert!(find_source::<ResolveError>(&io::Error::other("other")).is_none());
    }

    #[test]
    fn durations_read_in_seconds_or_milliseconds() {
        assert_eq!(human(Duration::from_secs(5)), "5 s");
        assert_eq!(human(Duration::from_millis(300)), "300 ms");
    }
}
