use std::time::Duration;

use tracing_subscriber::EnvFilter;

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .init();
    let port = number("EXAMPLE_SERVICE_PORT", 3001);
    let ratio = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0);
    let settings = taskfleet_example_service::Settings {
        delay: Duration::from_millis(number("EXAMPLE_DELAY_MS", 300)),
        chaos: taskfleet_example_service::Chaos {
            refuse: ratio("EXAMPLE_REFUSE_RATIO"),
            slow: ratio("EXAMPLE_SLOW_RATIO"),
            slow_by: Duration::from_millis(number("EXAMPLE_SLOW_MS", 2_000)),
            duplicate_callback: ratio("EXAMPLE_DUPLICATE_CALLBACK_RATIO"),
            drop_callback: ratio("EXAMPLE_DROP_CALLBACK_RATIO"),
            answer_after: Duration::from_millis(number("EXAMPLE_ANSWER_AFTER_MS", 0)),
            throttle: None,
        },
        stats: Default::default(),
        signing: match std::env::var("WEBHOOK_SIGNING_SECRETS").ok().filter(|s| !s.is_empty()) {
            None => None,
            Some(spec) => match taskfleet_core::signing::SigningSecrets::parse(&spec) {
                Ok(secrets) => Some(secrets),
                Err(error) => {
                    eprintln!("example-service: WEBHOOK_SIGNING_SECRETS: {error}");
                    return std::process::ExitCode::FAILURE;
                }
            },
        },
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port as u16)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("example-service: cannot listen on 127.0.0.1:{port}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("example external service on http://127.0.0.1:{port}/jobs (callback after {:?})", settings.delay);
    tokio::select! {
        served = taskfleet_example_service::serve(listener, settings) => {
            if let Err(error) = served {
                eprintln!("example-service: {error}");
                return std::process::ExitCode::FAILURE;
            }
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    std::process::ExitCode::SUCCESS
}
