//! Where the webhook signing secrets come from. The caller (signing jobs) and the webhook
//! (verifying callbacks) ask a [`SecretSource`] for the secrets in force once per job or callback;
//! they never hold a copy of their own, so a rotation reaches them without a deploy.
//!
//! Two sources:
//! - [`FixedSecrets`]: given once (local runs and tests, `WEBHOOK_SIGNING_SECRETS`).
//! - [`RefreshingSecrets`]: read from a [`SecretStore`] (in AWS, Secrets Manager) at cold start —
//!   a secret that cannot be read or parsed then is a start-up error — and read again when a
//!   request comes after the refresh interval (a minute in AWS). A read that fails or finds
//!   something that is not signing secrets keeps the secrets read last (and logs why, never what
//!   the secret holds), and is tried again a few seconds later. One request reads at a time; the
//!   others meanwhile use the secrets read last.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;

use crate::signing::{SecretError, SigningSecrets};
use crate::time::{Clock, SystemClock, Timestamp};

/// What [`SecretSource::current`] answers.
pub type SecretsFuture<'a> = Pin<Box<dyn Future<Output = Arc<SigningSecrets>> + Send + 'a>>;
/// What [`SecretStore::read`] answers.
pub type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<String, ReadError>> + Send + 'a>>;

/// The signing secrets in force now (port). Cheap: a source that reads them from elsewhere
/// answers from its cache and reads again at most once per refresh interval.
pub trait SecretSource: Send + Sync + fmt::Debug {
    fn current(&self) -> SecretsFuture<'_>;
}

/// Where the text of the secrets is kept (port; the Secrets Manager adapter implements it).
pub trait SecretStore: Send + Sync {
    /// The secret's current text: `whsec_…` secrets, comma-separated, newest first.
    fn read(&self) -> ReadFuture<'_>;
}

/// Why a [`SecretStore`] could not answer. Never carries the secret's content.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// The store did not answer, refused (permissions), or has no such secret.
    #[error("the secret store did not answer: {0}")]
    Unavailable(String),
    /// The secret holds binary data, not text.
    #[error("the secret holds no text")]
    NotText,
}

/// Why signing secrets could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the secret is not Standard Webhooks signing secrets: {0}")]
    Invalid(#[from] SecretError),
}

/// Secrets given once.
#[derive(Debug, Clone)]
pub struct FixedSecrets(Arc<SigningSecrets>);

impl FixedSecrets {
    pub fn new(secrets: SigningSecrets) -> Self {
        Self(Arc::new(secrets))
    }

    /// As the source a function holds.
    pub fn shared(secrets: SigningSecrets) -> Arc<dyn SecretSource> {
        Arc::new(Self::new(secrets))
    }
}

impl SecretSource for FixedSecrets {
    fn current(&self) -> SecretsFuture<'_> {
        let secrets = self.0.clone();
        Box::pin(async move { secrets })
    }
}

/// How soon a failed read is tried again (or the refresh interval, if shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Secrets read from a [`SecretStore`], cached, and read again after `refresh`.
pub struct RefreshingSecrets<S, C = SystemClock> {
    store: S,
    clock: C,
    refresh: Duration,
    state: Mutex<State>,
}

struct State {
    secrets: Arc<SigningSecrets>,
    /// No read before this.
    next_read: Timestamp,
    /// A request is reading the store now.
    reading: bool,
}

impl<S, C> fmt::Debug for RefreshingSecrets<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingSecrets").field("refresh", &self.refresh).finish_non_exhaustive()
    }
}

impl<S: SecretStore> RefreshingSecrets<S> {
    /// Reads the secrets now (cold start); they are read again on the first request after
    /// `refresh`.
    pub async fn load(store: S, refresh: Duration) -> Result<Self, LoadError> {
        Self::load_with_clock(store, refresh, SystemClock).await
    }
}

impl<S: SecretStore, C: Clock> RefreshingSecrets<S, C> {
    pub async fn load_with_clock(store: S, refresh: Duration, clock: C) -> Result<Self, LoadError> {
        let secrets = read(&store).await?;
        let next_read = clock.now().plus(refresh);
        Ok(Self {
            store,
            clock,
            refresh,
            state: Mutex::new(State { secrets: Arc::new(secrets), next_read, reading: false }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn refreshed(&self) -> Arc<SigningSecrets> {
        let now = self.clock.now();
        {
            let mut state = self.state();
            if state.reading || now < state.next_read {
                return state.secrets.clone();
            }
            state.reading = true;
        }
        // Clears `reading` however this ends, a request cut off mid-read included.
        let _reading = Reading(&self.state);
        let outcome = read(&self.store).await;
        let mut state = self.state();
        match outcome {
            Ok(secrets) => {
                state.secrets = Arc::new(secrets);
                state.next_read = self.clock.now().plus(self.refresh);
            }
            Err(error) => {
                tracing::warn!(%error, "webhook signing secrets not refreshed; still using the ones read last");
                state.next_read = self.clock.now().plus(self.refresh.min(RETRY_AFTER_FAILURE));
            }
        }
        state.secrets.clone()
    }
}

impl<S: SecretStore, C: Clock> SecretSource for RefreshingSecrets<S, C> {
    fn current(&self) -> SecretsFuture<'_> {
        Box::pin(self.refreshed())
    }
}

async fn read<S: SecretStore>(store: &S) -> Result<SigningSecrets, LoadError> {
    let text = store.read().await?;
    Ok(SigningSecrets::parse(&text)?)
}

/// Marks the end of a read when dropped.
struct Reading<'a>(&'a Mutex<State>);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).reading = false;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn secret(byte: u8) -> String {
        format!("whsec_{}", STANDARD.encode([byte; 32]))
    }

    /// A store whose text the test sets, that counts reads and can be made to fail or stall.
    struct Store {
        text: Mutex<Result<String, ReadError>>,
        reads: AtomicUsize,
        stall: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    }

    impl Default for Store {
        fn default() -> Self {
            Self { text: Mutex::new(Err(ReadError::NotText)), reads: AtomicUsize::new(0), stall: Mutex::new(None) }
        }
    }

    impl Store {
        fn holding(text: &str) -> Arc<Self> {
            let store = Arc::new(Self::default());
            store.set(Ok(text.to_owned()));
            store
        }

        fn set(&self, text: Result<String, ReadError>) {
            *self.text.lock().unwrap() = text;
        }

        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl SecretStore for Arc<Store> {
        fn read(&self) -> ReadFuture<'_> {
            Box::pin(async move {
                self.reads.fetch_add(1, Ordering::SeqCst);
                let stall = self.stall.lock().unwrap().take();
                if let Some(stall) = stall {
                    let _ = stall.await;
                }
                self.text.lock().unwrap().clone()
            })
        }
    }

    /// A clock the test moves.
    #[derive(Clone, Default)]
    struct TestClock(Arc<AtomicI64>);

    impl TestClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(1_000_000 + self.0.load(Ordering::SeqCst))
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// Whether a signature made with `secrets` verifies with the secret made of `byte`.
    fn signs_with(secrets: &Arc<SigningSecrets>, byte: u8) -> bool {
        let now = Timestamp::from_millis(1_000_000);
        let signed = secrets.sign("m", now, b"body");
        SigningSecrets::parse(&secret(byte)).unwrap().verify(&signed, b"body", now).is_ok()
    }

    async fn loaded(store: &Arc<Store>, clock: &TestClock) -> RefreshingSecrets<Arc<Store>, TestClock> {
        RefreshingSecrets::load_with_clock(store.clone(), MINUTE, clock.clone()).await.unwrap()
    }

    #[tokio::test]
    async fn fixed_secrets_are_what_they_were_given() {
        let source = FixedSecrets::shared(SigningSecrets::parse(&secret(1)).unwrap());
        assert!(signs_with(&source.current().await, 1));
        assert!(!signs_with(&source.current().await, 2));
    }

    #[tokio::test]
    async fn a_rotation_is_read_after_the_refresh_interval_and_not_before() {
        let (store, clock) = (Store::holding(&secret(1)), TestClock::default());
        let source = loaded(&store, &clock).await;
        assert_eq!(store.reads(), 1, "read once at load");
        store.set(Ok(format!("{},{}", secret(2), secret(1))));
        clock.advance(MINUTE - Duration::from_millis(1));
        let current = source.current().await;
        assert!(signs_with(&current, 1) && !signs_with(&current, 2), "read again before the interval");
        assert_eq!(store.reads(), 1);
        clock.advance(Duration::from_millis(1));
        let current = source.current().await;
        assert!(signs_with(&current, 2) && signs_with(&current, 1), "both sign during the rotation");
        assert_eq!(store.reads(), 2);
        store.set(Ok(secret(2)));
        clock.advance(MINUTE);
        let current = source.current().await;
        assert!(signs_with(&current, 2) && !signs_with(&current, 1), "the old secret is gone");
    }

    #[tokio::test]
    async fn a_failed_or_invalid_read_keeps_the_last_secrets_and_is_retried_soon() {
        let (store, clock) = (Store::holding(&secret(1)), TestClock::default());
        let source = loaded(&store, &clock).await;
        for broken in [Err(ReadError::Unavailable("throttled".into())), Err(ReadError::NotText), Ok("nonsense".into())]
        {
            store.set(broken);
            clock.advance(MINUTE);
            let reads = store.reads();
            assert!(signs_with(&source.current().await, 1));
            assert_eq!(store.reads(), reads + 1);
            // Not on every request: a few seconds later.
            clock.advance(RETRY_AFTER_FAILURE - Duration::from_millis(1));
            assert!(signs_with(&source.current().await, 1));
            assert_eq!(store.reads(), reads + 1);
        }
        store.set(Ok(secret(3)));
        clock.advance(RETRY_AFTER_FAILURE);
        assert!(signs_with(&source.current().await, 3), "the next good read is taken");
    }

    #[tokio::test]
    async fn a_secret_that_cannot_be_read_or_parsed_at_load_is_an_error() {
        let store = Arc::new(Store::default());
        store.set(Err(ReadError::Unavailable("AccessDenied".into())));
        let error = RefreshingSecrets::load(store.clone(), MINUTE).await.unwrap_err();
        assert_eq!(error, LoadError::Read(ReadError::Unavailable("AccessDenied".into())));
        store.set(Ok("whsec_c2hvcnQ=".into()));
        let error = RefreshingSecrets::load(store.clone(), MINUTE).await.unwrap_err();
        assert_eq!(error, LoadError::Invalid(SecretError::Key(1)));
        // What the store held is not in the message.
        assert!(!error.to_string().contains("c2hvcnQ"), "{error}");
    }

    #[tokio::test]
    async fn one_request_reads_while_the_others_use_the_last_secrets() {
        let (store, clock) = (Store::holding(&secret(1)), TestClock::default());
        let source = Arc::new(loaded(&store, &clock).await);
        store.set(Ok(secret(2)));
        let (release, stall) = tokio::sync::oneshot::channel();
        *store.stall.lock().unwrap() = Some(stall);
        clock.advance(MINUTE);
        let reader = tokio::spawn({
            let source = source.clone();
            async move { source.current().await }
        });
        while store.reads() < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..5 {
            assert!(signs_with(&source.current().await, 1), "a second request does not wait for the read");
        }
        assert_eq!(store.reads(), 2, "one read at a time");
        release.send(()).unwrap();
        assert!(signs_with(&reader.await.unwrap(), 2));
        assert!(signs_with(&source.current().await, 2));
    }

    #[tokio::test]
    async fn a_request_cut_off_mid_read_does_not_stop_later_refreshes() {
        let (store, clock) = (Store::holding(&secret(1)), TestClock::default());
        let source = loaded(&store, &clock).await;
        store.set(Ok(secret(2)));
        let (_never, stall) = tokio::sync::oneshot::channel::<()>();
        *store.stall.lock().unwrap() = Some(stall);
        clock.advance(MINUTE);
        let cut = tokio::time::timeout(Duration::from_millis(20), source.current()).await;
        assert!(cut.is_err(), "the read stalls");
        assert!(signs_with(&source.current().await, 2), "the next request reads again");
    }
}
