use std::convert::Infallible;

use lambda_http::{Error, service_fn};
use taskfleet_ingest::{App, handle};

use taskfleet_adapters::invocation;
use tracing::Instrument;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    taskfleet_adapters::logging::init();
    let sdk = taskfleet_adapters::config::aws().await;
    let app = &App::from_env(&sdk).await?;
    lambda_http::run(service_fn(move |request| async move {
        let answer = taskfleet_api::error::within(taskfleet_api::error::REQUEST_DEADLINE, handle(app, request));
        Ok::<_, Infallible>(answer.instrument(invocation::span()).await)
    }))
    .await
}
