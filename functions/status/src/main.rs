use std::convert::Infallible;

use lambda_http::{Error, service_fn};
use taskfleet_status::{App, handle};

use taskfleet_adapters::invocation;
use tracing::Instrument;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    taskfleet_adapters::logging::init();
    let sdk = taskfleet_adapters::config::aws().await;
    let app = &App::from_env(&sdk)?;
    lambda_http::run(service_fn(move |request| async move {
        // `handle` cuts the request off at its deadline: REQUEST_DEADLINE, plus the wait it asks.
        Ok::<_, Infallible>(handle(app, request).instrument(invocation::span()).await)
    }))
    .await
}
