//! The HTTP contract shared by the API functions (ingest, status, webhook): who is calling,
//! what they sent, what they get back, and how every error becomes a JSON answer.

pub mod error;
pub mod request;
pub mod response;
pub mod view;

pub use error::ApiError;
pub use lambda_http::{Body, Request, Response};
