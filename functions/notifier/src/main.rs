use lambda_runtime::{Error, service_fn};
use taskfleet_notifier::{App, handle};

use taskfleet_adapters::invocation;
use tracing::Instrument;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    taskfleet_adapters::logging::init();
    let sdk = taskfleet_adapters::config::aws().await;
    let app = &App::from_env(&sdk).await?;
    lambda_runtime::run(service_fn(move |event| async move {
        Ok::<_, Error>(handle(app, event).instrument(invocation::span()).await)
    }))
    .await
}
