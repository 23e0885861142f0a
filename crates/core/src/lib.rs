//! The taskfleet domain.
//!
//! A task is a small state machine (`RECEIVED → IN_PROGRESS → DONE | FAILED`) with a TTL.
//! This crate holds the rules and nothing that talks to AWS: adapters implement the
//! [`ports`] traits, and the Lambda functions call the use cases in [`service`].
//!
//! Feature `test-support`: in-memory test doubles (`memory`, `memory_blobs`, `auth::fixed`)
//! for the tests of the crates that use this one. Enable it in `[dev-dependencies]` only, so
//! that no release binary carries them.

pub mod auth;
pub mod blob;
pub mod completion;
pub mod dispatch;
pub mod error;
pub mod hold;
pub mod lifecycle;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
#[cfg(any(test, feature = "test-support"))]
pub mod memory_blobs;
pub mod metrics;
pub mod policy;
pub mod ports;
pub mod random;
pub mod retry;
pub mod secrets;
pub mod service;
pub mod signing;
pub mod task;
pub mod time;
pub mod token;
pub mod trace;
pub mod ttl;
pub mod validation;

pub use error::{ExternalError, MetricsError, PublishError, StoreError, ValidationError};
pub use lifecycle::{IllegalTransition, Transition};
pub use task::{ClientId, Task, TaskId, TaskStatus};
pub use time::Timestamp;
pub use ttl::TtlPolicy;
