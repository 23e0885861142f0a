//! Completion webhooks: when a task ends (DONE or FAILED, cancel included) and its submitter gave
//! a `webhook_url`, the fleet POSTs the task to it, signed the Standard Webhooks way with a
//! secret of the client's own, and retries on a Svix-like schedule.
//!
//! - [`attempt`]: one delivery attempt, as its timer asks: signed, sent, recorded;
//! - [`destination`]: which URLs may be called (SSRF rules), checked at submit and at delivery;
//! - [`schedule`]: when each delivery attempt is due, and when to give up;
//! - [`delivery`]: the delivery's state (pending, delivered, failed) and its rules;
//! - [`client_secret`]: each client's signing secrets, derived from a master key (nothing secret
//!   is stored), and their rotation with a grace period;
//! - [`envelope`]: the body and the message id of a delivery;
//! - [`rotation`]: `POST /webhook-secret`, creating or rotating a client's secret.

pub mod attempt;
pub mod client_secret;
pub mod delivery;
pub mod destination;
pub mod envelope;
pub mod rotation;
pub mod schedule;
