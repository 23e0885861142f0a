//! The deployment against the code: the dashboard and alarms (deploy/dashboard.json,
//! deploy/alarms.json) name exactly the metrics the code emits, and the CloudFormation template
//! that `serverless package` writes from serverless.yml declares the routes of the local front,
//! the table `table::create` makes, the functions under functions/, the settings config.rs reads,
//! one least-privilege role per function, signing secrets read at run time from one secret, and
//! safe deploys (every trigger on an alias that CodeDeploy moves, with rollback on alarms).
//!
//! The template tests read target/serverless/arm64/cloudformation-template-update-stack.json:
//! `scripts/check-package.sh` (or `make package`) writes it before `cargo test` runs. The table
//! test also needs the AWS emulator (`make test` starts it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use taskfleet_adapters::{config, table};
use taskfleet_core::memory::MemoryStore;
use taskfleet_core::metrics::{EVENTS, GAUGES, STATUS_DIMENSION};
use taskfleet_core::{TaskStatus, Timestamp, service};
use taskfleet_localfleet::dashboard::{Row, widget_rows};
use taskfleet_localfleet::front::ROUTES;

/// The namespace placeholder of the fleet's own metrics in the definitions.
const FLEET: &str = "${Namespace}";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Metric name → every dimension set it is drawn or alarmed with, for the fleet's namespace.
type Uses = BTreeMap<String, BTreeSet<BTreeMap<String, String>>>;

fn fleet_metrics(rows: impl IntoIterator<Item = Row>) -> Uses {
    let mut uses = Uses::new();
    for row in rows {
        if let Row::Metric(metric) = row
            && metric.namespace == FLEET
        {
            uses.entry(metric.name).or_default().insert(metric.dimensions);
        }
    }
    uses
}

fn dashboard_rows() -> Vec<Row> {
    json("deploy/dashboard.json")["widgets"].as_array().expect("widgets").iter().flat_map(widget_rows).collect()
}

fn alarm_rows() -> Vec<(String, Vec<Row>)> {
    let alarms = json("deploy/alarms.json");
    alarms
        .as_object()
        .expect("alarms by name")
        .iter()
        .map(|(name, alarm)| {
            let rows = alarm["metrics"].as_array().expect("metrics").iter().map(|r| Row::parse(r).expect("row"));
            (name.clone(), rows.collect())
        })
        .collect()
}

/// What the code emits: every gauge with the dimensions the cron puts it with, and every
/// per-event metric without dimensions (fleet-wide EMF metrics).
async fn emitted() -> Uses {
    let gauges = service::gauges(&MemoryStore::new(), Timestamp::now()).await.expect("gauges");
    let mut uses = Uses::new();
    for gauge in gauges {
        let dimensions = gauge
            .status
            .map(|status| BTreeMap::from([(STATUS_DIMENSION.to_owned(), status.as_str().to_owned())]))
            .unwrap_or_default();
        uses.entry(gauge.name.to_owned()).or_default().insert(dimensions);
    }
    for name in EVENTS {
        uses.entry(name.to_owned()).or_default().insert(BTreeMap::new());
    }
    uses
}

#[tokio::test]
async fn the_dashboard_draws_every_metric_the_code_emits_with_its_dimensions() {
    let emitted = emitted().await;
    let names: BTreeSet<&str> = GAUGES.iter().chain(EVENTS.iter()).copied().collect();
    assert_eq!(emitted.keys().map(String::as_str).collect::<BTreeSet<_>>(), names, "gauges() and GAUGES disagree");
    assert_eq!(fleet_metrics(dashboard_rows()), emitted);
}

#[tokio::test]
async fn alarms_watch_only_metrics_the_code_emits() {
    let emitted = emitted().await;
    for (alarm, rows) in alarm_rows() {
        for (name, dimension_sets) in fleet_metrics(rows) {
            let known = emitted.get(&name).unwrap_or_else(|| panic!("{alarm} watches {name}, which nothing emits"));
            for dimensions in dimension_sets {
                assert!(known.contains(&dimensions), "{alarm}: {name} is never emitted with {dimensions:?}");
            }
        }
    }
}

#[test]
fn alarms_cover_backlog_age_stuck_tasks_error_rates_and_every_dead_letter_queue() {
    let watched: BTreeSet<String> = alarm_rows()
        .into_iter()
        .flat_map(|(_, rows)| rows)
        .filter_map(|row| match row {
            Row::Metric(metric) => Some(format!("{}/{}{:?}", metric.namespace, metric.name, metric.dimensions)),
            Row::Expression { .. } => None,
        })
        .collect();
    let watches = |needle: &str| watched.iter().any(|w| w.contains(needle));
    for metric in
        ["OldestReceivedAgeSeconds", "TasksOverdue", "ExternalServiceErrors", "TasksFailed", "AWS/Lambda/Errors"]
    {
        assert!(watches(metric), "no alarm watches {metric}: {watched:#?}");
    }
    let template = template();
    for (queue, _) in of_type(&template, "AWS::SQS::Queue") {
        assert!(watches(&format!("${{{queue}.QueueName}}")), "no alarm on the depth of {queue}");
    }
}

#[test]
fn the_dashboard_covers_every_function_and_queue_of_the_stack() {
    let template = template();
    let drawn: BTreeSet<(String, String, String)> = dashboard_rows()
        .into_iter()
        .filter_map(|row| match row {
            Row::Metric(metric) => {
                Some((metric.namespace, metric.name, metric.dimensions.into_values().collect::<Vec<_>>().join(",")))
            }
            Row::Expression { .. } => None,
        })
        .collect();
    for (id, _) in of_type(&template, "AWS::Lambda::Function") {
        for metric in ["Errors", "Throttles", "Duration"] {
            let row = ("AWS/Lambda".to_owned(), metric.to_owned(), format!("${{{id}}}"));
            assert!(drawn.contains(&row), "the dashboard has no {metric} of {id}");
        }
    }
    for (id, _) in of_type(&template, "AWS::SQS::Queue") {
        let row =
            ("AWS/SQS".to_owned(), "ApproximateNumberOfMessagesVisible".to_owned(), format!("${{{id}.QueueName}}"));
        assert!(drawn.contains(&row), "the dashboard does not show the depth of {id}");
    }
    // The jobs queue in full: due timers (visible), timers not yet due (delayed: every deadline
    // timer waits up to 900 s there), timers with the caller (in flight), the oldest one's age,
    // and the caller's concurrency against its event source's MaximumConcurrency.
    for metric in [
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
    ] {
        let row = ("AWS/SQS".to_owned(), metric.to_owned(), "${JobsQueue.QueueName}".to_owned());
        assert!(drawn.contains(&row), "the dashboard does not draw the jobs queue's {metric}");
    }
    let caller = ("AWS/Lambda".to_owned(), "ConcurrentExecutions".to_owned(), "${CallerLambdaFunction}".to_owned());
    assert!(drawn.contains(&caller), "the dashboard does not draw the caller's concurrency");
    let latency: BTreeSet<String> = dashboard_rows()
        .into_iter()
        .filter_map(|row| match row {
            Row::Metric(m) if m.name == taskfleet_core::metrics::TASK_LATENCY => {
                m.options.get("stat").and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        })
        .collect();
    assert_eq!(latency, BTreeSet::from(["p50".to_owned(), "p99".to_owned()]));
}

// ---- the packaged template ----------------------------------------------------------------

const TEMPLATE: &str = "target/serverless/arm64/cloudformation-template-update-stack.json";

fn template() -> Value {
    let path = root().join(TEMPLATE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {}: {e}\nrun scripts/check-package.sh (or make package) first", path.display())
    });
    serde_json::from_str(&text).expect("the template is JSON")
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"].as_object().expect("Resources").iter().filter(|(_, r)| r["Type"] == kind).collect()
}

/// The function name (as in serverless.yml) of a function's logical id (`IngestLambdaFunction`).
fn function_name(logical_id: &str) -> String {
    logical_id.strip_suffix("LambdaFunction").expect("a function's logical id").to_lowercase()
}

/// serverless.yml's function name of each deployed function, by logical id.
fn functions(template: &Value) -> BTreeMap<String, &Value> {
    of_type(template, "AWS::Lambda::Function").into_iter().map(|(id, f)| (function_name(id), f)).collect()
}

#[test]
fn the_http_api_routes_are_the_local_fronts_routes() {
    let template = template();
    let resources = &template["Resources"];
    let deployed: BTreeSet<(String, String)> = of_type(&template, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .map(|(id, route)| {
            let integration = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"].as_str().expect("integration");
            let uri = &resources[integration]["Properties"]["IntegrationUri"];
            let function = invoked_alias(&template, uri).unwrap_or_else(|| panic!("{id}: no function's alias: {uri}"));
            (route["Properties"]["RouteKey"].as_str().expect("route key").to_owned(), function)
        })
        .collect();
    let local: BTreeSet<(String, String)> =
        ROUTES.iter().map(|route| (route.key(), format!("{:?}", route.function).to_lowercase())).collect();
    assert_eq!(deployed, local);
}

#[test]
fn the_api_functions_outlast_their_request_deadline_and_a_waiting_read_within_the_integration_timeout() {
    use taskfleet_api::error::REQUEST_DEADLINE;
    let template = template();
    let deployed = functions(&template);
    // API Gateway HTTP APIs give an integration at most 30 s.
    for integration in of_type(&template, "AWS::ApiGatewayV2::Integration") {
        assert_eq!(whole(&integration.1["Properties"]["TimeoutInMillis"]), 30_000, "{}", integration.0);
    }
    let wait = taskfleet_core::validation::MAX_WAIT_SECONDS;
    for (function, longest) in [
        ("ingest", REQUEST_DEADLINE.as_secs()),
        ("webhook", REQUEST_DEADLINE.as_secs()),
        ("status", REQUEST_DEADLINE.as_secs() + wait),
    ] {
        let timeout = whole(&deployed[function]["Properties"]["Timeout"]);
        assert!(timeout > longest, "{function}: a {timeout} s timeout cuts a {longest} s request off");
        assert!(timeout < 30, "{function}: a {timeout} s timeout outlasts the HTTP API's 30 s");
    }
}

#[test]
fn every_function_package_is_deployed_under_its_binary_name() {
    let mut binaries = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/") {
        let manifest = std::fs::read_to_string(entry.expect("entry").path().join("Cargo.toml")).expect("Cargo.toml");
        let bin = manifest.split("[[bin]]").nth(1).expect("a [[bin]] section");
        let name = bin.lines().find_map(|l| l.trim().strip_prefix("name = ")).expect("a binary name");
        binaries.insert(name.trim_matches('"').to_owned());
    }
    let template = template();
    let deployed: BTreeSet<String> = functions(&template).into_keys().collect();
    assert_eq!(deployed, binaries);
    for (name, function) in functions(&template) {
        let properties = &function["Properties"];
        assert_eq!(properties["Runtime"], "provided.al2023", "{name}");
        assert_eq!(properties["Handler"], "bootstrap", "{name}");
        assert_eq!(properties["Architectures"], serde_json::json!(["arm64"]), "{name}");
        assert_eq!(properties["LoggingConfig"]["LogFormat"], "JSON", "{name}");
    }
    for (id, group) in of_type(&template, "AWS::Logs::LogGroup") {
        assert!(group["Properties"]["RetentionInDays"].as_u64().is_some(), "{id} keeps logs forever");
    }
}

/// The values of every `pub const NAME: &str = "VALUE";` in config.rs: the variables it reads.
fn config_variables() -> BTreeSet<String> {
    read("crates/adapters/src/config.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("pub const ")?.split_once(": &str = \"")?.1.strip_suffix("\";"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn functions_get_only_settings_the_code_reads_and_the_ones_it_requires() {
    let known = config_variables();
    let template = template();
    for (name, function) in functions(&template) {
        let variables = function["Properties"]["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        for variable in variables.keys() {
            assert!(known.contains(variable), "{name} is given {variable}, which config.rs does not read");
        }
        let required: &[&str] = match name.as_str() {
            "dispatcher" => &[config::JOBS_QUEUE_URL, config::DELIVERIES_QUEUE_URL],
            "caller" => &[
                config::TASKS_TABLE,
                config::EXTERNAL_SERVICE_URL,
                config::CALLBACK_BASE_URL,
                config::BLOBS_BUCKET,
                config::JOBS_QUEUE_URL,
                config::CALLER_CONCURRENCY,
                config::WEBHOOK_SIGNING_SECRET_ARN,
            ],
            "sweeper" => &[config::TASKS_TABLE, config::SWEEP_BATCH],
            "notifier" => &[
                config::TASKS_TABLE,
                config::BLOBS_BUCKET,
                config::DELIVERIES_QUEUE_URL,
                config::NOTIFIER_CONCURRENCY,
                config::WEBHOOK_TIMEOUT_MS,
                config::WEBHOOK_MASTER_KEY_ARN,
            ],
            "webhook" => &[config::TASKS_TABLE, config::BLOBS_BUCKET, config::WEBHOOK_SIGNING_SECRET_ARN],
            "ingest" | "status" => &[config::TASKS_TABLE, config::BLOBS_BUCKET],
            _ => &[config::TASKS_TABLE],
        };
        for variable in required {
            assert!(variables.contains_key(*variable), "{name} needs {variable}");
        }
        // Only the two functions that send timers know the queue; the sweeper sends nothing.
        let sends = matches!(name.as_str(), "dispatcher" | "caller");
        assert_eq!(variables.contains_key(config::JOBS_QUEUE_URL), sends, "{name}: {}", config::JOBS_QUEUE_URL);
        if sends {
            assert_eq!(variables[config::JOBS_QUEUE_URL], serde_json::json!({ "Ref": "JobsQueue" }), "{name}");
        }
        // Only the functions that send delivery timers know the deliveries queue.
        let delivers = matches!(name.as_str(), "dispatcher" | "notifier");
        let deliveries = variables.get(config::DELIVERIES_QUEUE_URL);
        assert_eq!(deliveries.is_some(), delivers, "{name}: {}", config::DELIVERIES_QUEUE_URL);
        if let Some(queue) = deliveries {
            assert_eq!(queue, &serde_json::json!({ "Ref": "DeliveriesQueue" }), "{name}");
        }
    }
}

/// The event source mapping of a function (by serverless.yml name): exactly one expected.
fn event_source<'a>(template: &'a Value, function: &str) -> &'a Value {
    let mappings: Vec<&Value> = of_type(template, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .map(|(_, mapping)| &mapping["Properties"])
        .filter(|properties| invoked_alias(template, &properties["FunctionName"]).as_deref() == Some(function))
        .collect();
    let [mapping] = mappings.as_slice() else { panic!("one event source of {function} expected: {mappings:?}") };
    mapping
}

fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[test]
fn the_event_sources_are_the_stream_for_the_dispatcher_and_a_queue_each_for_the_caller_and_the_notifier() {
    let template = template();
    let sources: BTreeSet<String> = of_type(&template, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .map(|(_, mapping)| mapping["Properties"]["EventSourceArn"].to_string())
        .collect();
    let expected: BTreeSet<String> = [
        serde_json::json!({ "Fn::GetAtt": ["TasksTable", "StreamArn"] }),
        serde_json::json!({ "Fn::GetAtt": ["JobsQueue", "Arn"] }),
        serde_json::json!({ "Fn::GetAtt": ["DeliveriesQueue", "Arn"] }),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(sources, expected);
}

#[test]
fn the_dispatcher_reads_the_stream_in_bounded_retried_parallel_batches_with_item_failures() {
    let template = template();
    let properties = event_source(&template, "dispatcher");
    assert_eq!(properties["EventSourceArn"], serde_json::json!({ "Fn::GetAtt": ["TasksTable", "StreamArn"] }));
    assert_eq!(properties["FunctionResponseTypes"], serde_json::json!(["ReportBatchItemFailures"]));
    assert_eq!(properties["BisectBatchOnFunctionError"], true);
    assert!(properties["MaximumRetryAttempts"].as_i64().is_some_and(|n| (0..=100).contains(&n)));
    assert!(properties["DestinationConfig"]["OnFailure"]["Destination"].is_object());
    assert!((1..=10_000).contains(&whole(&properties["BatchSize"])), "{}", properties["BatchSize"]);
    // Batches of one shard at once (dispatcherParallelization); records of one task keep their
    // order at any factor.
    assert!((1..=10).contains(&whole(&properties["ParallelizationFactor"])), "{}", properties["ParallelizationFactor"]);
    // The filters let through every change that leaves a task active, each of which sets a
    // timer (RECEIVED: its start; IN_PROGRESS: its deadline), and the changes of an ended task
    // with a completion webhook (its next delivery attempt): the attributes and values the store
    // writes. Ended tasks without a webhook and TTL removals are not delivered (nor billed).
    let filters = properties["FilterCriteria"]["Filters"].as_array().expect("filters");
    let [filter, ended] = filters.as_slice() else { panic!("two filters expected: {filters:?}") };
    let ended: Value = serde_json::from_str(ended["Pattern"].as_str().expect("pattern")).expect("JSON");
    let terminal: BTreeSet<String> =
        TaskStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| s.as_str().to_owned()).collect();
    let image = &ended["dynamodb"]["NewImage"];
    assert_eq!(
        image[table::STATUS]["S"].as_array().expect("statuses").iter().map(text).collect::<BTreeSet<_>>(),
        terminal
    );
    assert_eq!(image["webhook_url"]["S"], serde_json::json!([{ "exists": true }]), "{ended}");
    assert_eq!(ended["eventName"], serde_json::json!(["MODIFY"]), "a task is never inserted ended");
    let pattern: Value = serde_json::from_str(filter["Pattern"].as_str().expect("pattern")).expect("JSON");
    let passed: BTreeSet<String> = pattern["dynamodb"]["NewImage"][table::STATUS]["S"]
        .as_array()
        .expect("status values")
        .iter()
        .map(text)
        .collect();
    let active: BTreeSet<String> =
        TaskStatus::ALL.iter().filter(|s| !s.is_terminal()).map(|s| s.as_str().to_owned()).collect();
    assert_eq!(passed, active);
    assert_eq!(pattern["eventName"], serde_json::json!(["INSERT", "MODIFY"]));
}

#[test]
fn the_caller_reads_the_jobs_queue_in_bounded_batches_with_item_failures() {
    use taskfleet_localfleet::queue::EventSource;
    let template = template();
    let properties = event_source(&template, "caller");
    assert_eq!(properties["EventSourceArn"], serde_json::json!({ "Fn::GetAtt": ["JobsQueue", "Arn"] }));
    // Only the messages the caller reports failed come back.
    assert_eq!(properties["FunctionResponseTypes"], serde_json::json!(["ReportBatchItemFailures"]));
    // The fleet-wide bound: at most MaximumConcurrency invocations, each handing over at most
    // CALLER_CONCURRENCY jobs at once.
    let max_concurrency = whole(&properties["ScalingConfig"]["MaximumConcurrency"]);
    assert!((2..=1_000).contains(&max_concurrency), "MaximumConcurrency {max_concurrency}");
    let caller = functions(&template)["caller"];
    let concurrency = whole(&caller["Properties"]["Environment"]["Variables"][config::CALLER_CONCURRENCY]);
    assert!((1..=config::MAX_CALLER_CONCURRENCY).contains(&concurrency), "CALLER_CONCURRENCY {concurrency}");
    // Batch and window as the local fleet reads the queue by default (make dev behaves as AWS);
    // a batch of more than ten needs a window of at least a second (Lambda refuses it otherwise).
    let local = EventSource::default();
    let batch = whole(&properties["BatchSize"]);
    let window = whole(&properties["MaximumBatchingWindowInSeconds"]);
    assert_eq!(batch, local.batch_size as u64, "BatchSize");
    assert_eq!(window, local.batch_window.as_secs(), "MaximumBatchingWindowInSeconds");
    assert!(batch <= 10 || window >= 1, "a batch of {batch} needs a batching window");
    // Invoked synchronously by the event source: no async retries or destination to configure.
    let invoke_configs: Vec<&String> = of_type(&template, "AWS::Lambda::EventInvokeConfig")
        .into_iter()
        .filter(|(_, c)| c["Properties"]["FunctionName"] == serde_json::json!({ "Ref": "CallerLambdaFunction" }))
        .map(|(id, _)| id)
        .collect();
    assert!(invoke_configs.is_empty(), "async settings on the caller: {invoke_configs:?}");
}

#[test]
fn the_jobs_queue_outlasts_the_caller_and_sets_timers_it_keeps_failing_on_aside() {
    use std::time::Duration;
    use taskfleet_core::dispatch::{EARLY_WAIT, MAX_DELAY_SECONDS};
    let template = template();
    let resources = &template["Resources"];
    let queue = &resources["JobsQueue"]["Properties"];
    let caller = functions(&template)["caller"];
    let timeout = whole(&caller["Properties"]["Timeout"]);
    // AWS: an SQS event source's visibility timeout at least six times the function's timeout.
    let visibility = whole(&queue["VisibilityTimeout"]);
    assert!(visibility >= 6 * timeout, "visibility timeout {visibility} s < 6 x the caller's {timeout} s");
    // One invocation fits its batch: ceil(batch / CALLER_CONCURRENCY) waves, each the external
    // call's timeout, an early timer's wait and two SDK operations (the start and the follow-up
    // write) at their own timeout.
    let variables = &caller["Properties"]["Environment"]["Variables"];
    let external = Duration::from_millis(whole(&variables[config::EXTERNAL_TIMEOUT_MS]));
    let wave = external + EARLY_WAIT + 2 * config::SDK_OPERATION_TIMEOUT;
    let batch = whole(&event_source(&template, "caller")["BatchSize"]);
    let waves = batch.div_ceil(whole(&variables[config::CALLER_CONCURRENCY]));
    assert!(
        Duration::from_secs(timeout) >= wave * u32::try_from(waves).expect("waves"),
        "the caller's timeout {timeout} s does not fit {waves} wave(s) of {wave:?}"
    );
    // Timers the caller keeps failing on go to JobsDlq after as many receives as locally.
    let redrive = &queue["RedrivePolicy"];
    assert_eq!(redrive["deadLetterTargetArn"], serde_json::json!({ "Fn::GetAtt": ["JobsDlq", "Arn"] }));
    assert_eq!(whole(&redrive["maxReceiveCount"]), u64::from(taskfleet_localfleet::resources::MAX_RECEIVES));
    // A timer waits at most the longest delay before it is sent on; the queue keeps messages
    // longer than a task can live, and its dead-letter queue longer still (a dead letter keeps
    // its first enqueue time).
    let retention = whole(&queue["MessageRetentionPeriod"]);
    let ingest = functions(&template)["ingest"];
    let ttl = whole(&ingest["Properties"]["Environment"]["Variables"][config::TASK_TTL_SECONDS]);
    assert!(retention >= ttl.max(u64::from(MAX_DELAY_SECONDS)), "retention {retention} s");
    assert!(whole(&resources["JobsDlq"]["Properties"]["MessageRetentionPeriod"]) > retention);
}

// ---- issue 12: completion webhooks, delivered by the notifier from a queue of their own -------

#[test]
fn the_notifier_reads_the_deliveries_queue_in_bounded_batches_with_item_failures() {
    let template = template();
    let properties = event_source(&template, "notifier");
    assert_eq!(properties["EventSourceArn"], serde_json::json!({ "Fn::GetAtt": ["DeliveriesQueue", "Arn"] }));
    // Only the messages the notifier reports failed (store or queue errors) come back.
    assert_eq!(properties["FunctionResponseTypes"], serde_json::json!(["ReportBatchItemFailures"]));
    let max_concurrency = whole(&properties["ScalingConfig"]["MaximumConcurrency"]);
    assert!((2..=1_000).contains(&max_concurrency), "MaximumConcurrency {max_concurrency}");
    // A batch is delivered in one wave: every attempt of it at once, so a slow receiver holds
    // no other client's delivery longer than its own attempt's timeout.
    let notifier = functions(&template)["notifier"];
    let variables = &notifier["Properties"]["Environment"]["Variables"];
    let concurrency = whole(&variables[config::NOTIFIER_CONCURRENCY]);
    assert!((1..=config::MAX_NOTIFIER_CONCURRENCY).contains(&concurrency), "NOTIFIER_CONCURRENCY {concurrency}");
    let batch = whole(&properties["BatchSize"]);
    assert!((1..=10).contains(&batch) && batch <= concurrency, "BatchSize {batch} > NOTIFIER_CONCURRENCY");
    let invoke_configs: Vec<&String> = of_type(&template, "AWS::Lambda::EventInvokeConfig")
        .into_iter()
        .filter(|(_, c)| c["Properties"]["FunctionName"] == serde_json::json!({ "Ref": "NotifierLambdaFunction" }))
        .map(|(id, _)| id)
        .collect();
    assert!(invoke_configs.is_empty(), "async settings on the notifier: {invoke_configs:?}");
}

#[test]
fn the_deliveries_queue_outlasts_the_notifier_and_sets_timers_it_keeps_failing_on_aside() {
    use std::time::Duration;
    use taskfleet_core::dispatch::{EARLY_WAIT, MAX_DELAY_SECONDS};
    let template = template();
    let resources = &template["Resources"];
    let queue = &resources["DeliveriesQueue"]["Properties"];
    let notifier = functions(&template)["notifier"];
    let timeout = whole(&notifier["Properties"]["Timeout"]);
    let visibility = whole(&queue["VisibilityTimeout"]);
    assert!(visibility >= 6 * timeout, "visibility timeout {visibility} s < 6 x the notifier's {timeout} s");
    // One invocation fits its batch: ceil(batch / NOTIFIER_CONCURRENCY) waves, each an attempt's
    // timeout, an early timer's wait and three SDK operations (the task, the client's secret
    // record, the conditional write that records the attempt).
    let variables = &notifier["Properties"]["Environment"]["Variables"];
    let attempt = Duration::from_millis(whole(&variables[config::WEBHOOK_TIMEOUT_MS]));
    let wave = attempt + EARLY_WAIT + 3 * config::SDK_OPERATION_TIMEOUT;
    let batch = whole(&event_source(&template, "notifier")["BatchSize"]);
    let waves = batch.div_ceil(whole(&variables[config::NOTIFIER_CONCURRENCY]));
    assert!(
        Duration::from_secs(timeout) >= wave * u32::try_from(waves).expect("waves"),
        "the notifier's timeout {timeout} s does not fit {waves} wave(s) of {wave:?}"
    );
    let redrive = &queue["RedrivePolicy"];
    assert_eq!(redrive["deadLetterTargetArn"], serde_json::json!({ "Fn::GetAtt": ["DeliveriesDlq", "Arn"] }));
    assert_eq!(whole(&redrive["maxReceiveCount"]), u64::from(taskfleet_localfleet::resources::MAX_RECEIVES));
    let retention = whole(&queue["MessageRetentionPeriod"]);
    assert!(retention >= u64::from(MAX_DELAY_SECONDS), "retention {retention} s");
    assert!(whole(&resources["DeliveriesDlq"]["Properties"]["MessageRetentionPeriod"]) > retention);
}

#[test]
fn given_up_webhooks_notifier_errors_and_the_deliveries_queues_alarm() {
    let template = template();
    let alarms = deployed_alarms(&template);
    // The first delivery given up fires (its metric has no dimension: fleet-wide).
    let (given_up, watched) = &alarms["WebhooksGivenUpAlarm"];
    let namespace = text(&template["Resources"]["WebhooksGivenUpAlarm"]["Properties"]["Namespace"]);
    let metric = (namespace, taskfleet_core::metrics::WEBHOOKS_GIVEN_UP.to_owned(), BTreeMap::new());
    assert_eq!(watched, &BTreeSet::from([metric]));
    assert_eq!(
        (given_up["ComparisonOperator"].as_str(), whole(&given_up["Threshold"])),
        (Some("GreaterThanThreshold"), 0)
    );
    assert_eq!(given_up["TreatMissingData"], "notBreaching");
    // The notifier's errors and throttles are in the rollback alarms, as every function's.
    let notifier = BTreeMap::from([("FunctionName".to_owned(), "${NotifierLambdaFunction}".to_owned())]);
    for (alarm, metric) in [("LambdaErrorsAlarm", "Errors"), ("LambdaThrottlesAlarm", "Throttles")] {
        let key = ("AWS/Lambda".to_owned(), metric.to_owned(), notifier.clone());
        assert!(alarms[alarm].1.contains(&key), "{alarm} does not watch the notifier");
    }
    // Any timer in the deliveries dead-letter queue fires.
    let (dlq, watched) = &alarms["DeliveriesDlqAlarm"];
    let queue = BTreeMap::from([("QueueName".to_owned(), "${DeliveriesDlq.QueueName}".to_owned())]);
    let visible = ("AWS/SQS".to_owned(), "ApproximateNumberOfMessagesVisible".to_owned(), queue);
    assert_eq!(watched, &BTreeSet::from([visible]));
    assert_eq!((dlq["ComparisonOperator"].as_str(), whole(&dlq["Threshold"])), (Some("GreaterThanThreshold"), 0));
}

#[test]
fn every_queue_is_encrypted_and_refuses_requests_without_tls() {
    let template = template();
    let queues: Vec<&String> = of_type(&template, "AWS::SQS::Queue").into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        queues.iter().map(|q| q.as_str()).collect::<BTreeSet<_>>(),
        BTreeSet::from(["JobsQueue", "JobsDlq", "DeliveriesQueue", "DeliveriesDlq", "DispatcherDlq"])
    );
    for queue in &queues {
        assert_eq!(template["Resources"][queue.as_str()]["Properties"]["SqsManagedSseEnabled"], true, "{queue}");
        let covered = of_type(&template, "AWS::SQS::QueuePolicy").into_iter().any(|(_, policy)| {
            let properties = &policy["Properties"];
            let attached =
                properties["Queues"].as_array().expect("Queues").contains(&serde_json::json!({ "Ref": queue }));
            let arn = serde_json::json!({ "Fn::GetAtt": [queue, "Arn"] });
            attached
                && properties["PolicyDocument"]["Statement"].as_array().expect("statements").iter().any(|s| {
                    s["Effect"] == "Deny"
                        && s["Principal"] == "*"
                        && s["Action"] == "sqs:*"
                        && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
                        && s["Resource"].as_array().is_some_and(|r| r.contains(&arn))
                })
        });
        assert!(covered, "no TLS-only policy on {queue}");
    }
}

/// (actions, resource) of every statement a function's role allows.
fn grants(template: &Value, function: &Value) -> Vec<(BTreeSet<String>, Value, Value)> {
    let role = function["Properties"]["Role"]["Fn::GetAtt"][0].as_str().expect("a role of the stack's own");
    let mut grants = Vec::new();
    for policy in template["Resources"][role]["Properties"]["Policies"].as_array().expect("inline policies") {
        for statement in policy["PolicyDocument"]["Statement"].as_array().expect("statements") {
            assert_eq!(statement["Effect"], "Allow");
            let actions = match &statement["Action"] {
                Value::String(action) => BTreeSet::from([action.clone()]),
                other => other.as_array().expect("actions").iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
            };
            grants.push((actions, statement["Resource"].clone(), statement["Condition"].clone()));
        }
    }
    grants
}

#[test]
fn each_function_has_a_role_of_its_own_with_only_what_it_uses() {
    let template = template();
    let expected: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            "ingest",
            &[
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:GetItem",
                "s3:PutObject",
                "secretsmanager:GetSecretValue",
            ][..],
        ),
        ("status", &["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "s3:GetObject"][..]),
        ("webhook", &["dynamodb:UpdateItem", "dynamodb:GetItem", "s3:PutObject", "secretsmanager:GetSecretValue"][..]),
        (
            "dispatcher",
            &[
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                "sqs:SendMessage",
            ][..],
        ),
        (
            "caller",
            &[
                "dynamodb:UpdateItem",
                "dynamodb:GetItem",
                "s3:GetObject",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
                "secretsmanager:GetSecretValue",
            ][..],
        ),
        ("metrics", &["dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem", "cloudwatch:PutMetricData"][..]),
        // The safety net writes tasks only: their stream records make the dispatcher set timers.
        ("sweeper", &["dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:GetItem"][..]),
        (
            "notifier",
            &[
                "dynamodb:UpdateItem",
                "dynamodb:GetItem",
                "s3:GetObject",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
                "secretsmanager:GetSecretValue",
            ][..],
        ),
    ]);
    let mut roles = BTreeSet::new();
    for (name, function) in functions(&template) {
        assert!(roles.insert(function["Properties"]["Role"].to_string()), "{name} shares a role");
        let mut allowed = BTreeSet::new();
        for (actions, resource, condition) in grants(&template, function) {
            for action in &actions {
                assert!(!action.contains('*'), "{name}: wildcard action {action}");
            }
            if resource == "*" {
                assert_eq!(actions, BTreeSet::from(["cloudwatch:PutMetricData".to_owned()]), "{name}: * resource");
                assert!(condition["StringEquals"]["cloudwatch:namespace"].is_string(), "{name}: any namespace");
            }
            allowed.extend(actions.into_iter().filter(|a| !a.starts_with("logs:")));
        }
        let want: BTreeSet<String> = expected[name.as_str()].iter().map(|a| (*a).to_owned()).collect();
        assert_eq!(allowed, want, "{name}");
    }
}

#[test]
fn each_role_reaches_only_its_own_prefix_of_the_blobs_bucket() {
    let template = template();
    let objects = |prefix: &str| serde_json::json!({ "Fn::Sub": format!("${{BlobsBucket.Arn}}/{prefix}/*") });
    let expected: BTreeMap<&str, Vec<(BTreeSet<String>, Value)>> = BTreeMap::from([
        ("ingest", vec![(BTreeSet::from(["s3:PutObject".to_owned()]), objects("payloads"))]),
        ("caller", vec![(BTreeSet::from(["s3:GetObject".to_owned()]), objects("payloads"))]),
        ("webhook", vec![(BTreeSet::from(["s3:PutObject".to_owned()]), objects("results"))]),
        // GET /tasks/{id} answers presigned URLs of results, which act with this grant.
        ("status", vec![(BTreeSet::from(["s3:GetObject".to_owned()]), objects("results"))]),
        // Completion webhooks show a large result as GET /tasks/{id} does: a presigned URL.
        ("notifier", vec![(BTreeSet::from(["s3:GetObject".to_owned()]), objects("results"))]),
    ]);
    for (name, function) in functions(&template) {
        let s3: Vec<(BTreeSet<String>, Value)> = grants(&template, function)
            .into_iter()
            .filter(|(actions, _, _)| actions.iter().any(|a| a.starts_with("s3:")))
            .map(|(actions, resource, condition)| {
                assert!(condition.is_null(), "{name}: conditional S3 grant {condition}");
                (actions, resource)
            })
            .collect();
        assert_eq!(s3, expected.get(name.as_str()).cloned().unwrap_or_default(), "{name}");
    }
}

#[test]
fn only_the_dispatcher_the_caller_and_the_notifier_send_timers_each_to_its_queue() {
    let template = template();
    // (action, resource as JSON text)
    let arn = |queue: &str| serde_json::json!({ "Fn::GetAtt": [queue, "Arn"] }).to_string();
    let action = |a: &str| a.to_owned();
    let expected: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::from([
        (
            "dispatcher",
            BTreeSet::from([
                (action("sqs:SendMessage"), arn("JobsQueue")),
                (action("sqs:SendMessage"), arn("DeliveriesQueue")),
                // The stream event source's on-failure destination.
                (action("sqs:SendMessage"), arn("DispatcherDlq")),
            ]),
        ),
        (
            "caller",
            [
                // Its event source mapping, and timers it sends on.
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
            ]
            .into_iter()
            .map(|a| (action(a), arn("JobsQueue")))
            .collect(),
        ),
        (
            "notifier",
            [
                // Its event source mapping, and delivery timers it sends on.
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
            ]
            .into_iter()
            .map(|a| (action(a), arn("DeliveriesQueue")))
            .collect(),
        ),
    ]);
    for (name, function) in functions(&template) {
        let mut messaging = BTreeSet::new();
        for (actions, resource, condition) in grants(&template, function) {
            for a in actions.iter().filter(|a| a.starts_with("sqs:") || a.starts_with("sns:")) {
                assert!(condition.is_null(), "{name}: conditional {a}");
                let resources = match &resource {
                    Value::Array(list) => list.clone(),
                    one => vec![one.clone()],
                };
                for r in resources {
                    messaging.insert((a.clone(), r.to_string()));
                }
            }
        }
        assert_eq!(messaging, expected.get(name.as_str()).cloned().unwrap_or_default(), "{name}");
    }
    // No dispatch topic any more: the one topic left is where alarms notify.
    let topics: Vec<&String> = of_type(&template, "AWS::SNS::Topic").into_iter().map(|(id, _)| id).collect();
    assert_eq!(topics, ["AlarmTopic"]);
}

/// A number the template holds as a number or as its decimal text (serverless params).
fn whole(value: &Value) -> u64 {
    value.as_u64().or_else(|| value.as_str()?.parse().ok()).unwrap_or_else(|| panic!("not a whole number: {value}"))
}

#[test]
fn the_blobs_bucket_is_private_encrypted_tls_only_and_expires_both_prefixes() {
    let template = template();
    let resources = &template["Resources"];
    let buckets: Vec<&String> = of_type(&template, "AWS::S3::Bucket").into_iter().map(|(id, _)| id).collect();
    assert!(buckets.contains(&&"BlobsBucket".to_owned()), "{buckets:?}");
    let bucket = &resources["BlobsBucket"]["Properties"];

    let encryption = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"];
    assert_eq!(encryption.as_array().map(Vec::len), Some(1), "{encryption}");
    assert_eq!(encryption[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"], "AES256");
    assert_eq!(encryption[0]["BucketKeyEnabled"], true);

    let block = &bucket["PublicAccessBlockConfiguration"];
    for setting in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(block[setting], true, "{setting}");
    }
    assert_eq!(bucket["OwnershipControls"]["Rules"], serde_json::json!([{ "ObjectOwnership": "BucketOwnerEnforced" }]));

    // TLS only: a bucket policy on this bucket denies every request without it.
    let policies: Vec<&Value> = of_type(&template, "AWS::S3::BucketPolicy")
        .into_iter()
        .map(|(_, policy)| &policy["Properties"])
        .filter(|policy| policy["Bucket"] == serde_json::json!({ "Ref": "BlobsBucket" }))
        .collect();
    let [policy] = policies.as_slice() else { panic!("one policy on BlobsBucket expected: {policies:?}") };
    let denies_plain_http = policy["PolicyDocument"]["Statement"].as_array().expect("statements").iter().any(|s| {
        s["Effect"] == "Deny"
            && s["Principal"] == "*"
            && s["Action"] == "s3:*"
            && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
            && s["Resource"]
                == serde_json::json!([
                    { "Fn::GetAtt": ["BlobsBucket", "Arn"] },
                    { "Fn::Sub": "${BlobsBucket.Arn}/*" },
                ])
    });
    assert!(denies_plain_http, "no TLS-only statement: {policy}");

    // Lifecycle: payloads live while their task can (its run_at, at most 7 days ahead, + TTL +
    // retention), results a retention longer than a task (they are written when it finishes),
    // each rounded up to whole days plus one; incomplete uploads go after a day.
    let deployed = functions(&template);
    let environment = &deployed["ingest"]["Properties"]["Environment"]["Variables"];
    let ttl = whole(&environment[config::TASK_TTL_SECONDS]);
    let retention = whole(&environment[config::RESULT_RETENTION_SECONDS]);
    let days = |seconds: u64| seconds.div_ceil(86_400) + 1;
    let rules: BTreeMap<String, &Value> = bucket["LifecycleConfiguration"]["Rules"]
        .as_array()
        .expect("lifecycle rules")
        .iter()
        .map(|rule| (text(&rule["Prefix"]), rule))
        .collect();
    let ahead = taskfleet_core::validation::MAX_RUN_AT_AHEAD.as_secs();
    let expected =
        BTreeMap::from([("payloads/", days(ahead + ttl + retention)), ("results/", days(ttl + 2 * retention))]);
    assert_eq!(rules.keys().map(String::as_str).collect::<BTreeSet<_>>(), expected.keys().copied().collect());
    for (prefix, expiry_days) in expected {
        let rule = rules[prefix];
        assert_eq!(rule["Status"], "Enabled", "{prefix}");
        assert_eq!(whole(&rule["ExpirationInDays"]), expiry_days, "{prefix}: expiry in days");
        assert_eq!(whole(&rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]), 1, "{prefix}");
    }
    // The payload keys the code writes fall under their prefix.
    assert!(taskfleet_core::blob::payload_key(&taskfleet_core::TaskId::generate()).starts_with("payloads/"));

    for (name, function) in &deployed {
        let variables = &function["Properties"]["Environment"]["Variables"];
        assert_eq!(variables[config::BLOBS_BUCKET], serde_json::json!({ "Ref": "BlobsBucket" }), "{name}");
    }
}

// ---- the table: the template against what table::create makes in the emulator -------------

/// (attribute, HASH | RANGE), in key order.
type Keys = Vec<(String, String)>;
/// An index: its keys, its projection type and the non-key attributes it carries.
type Index = (Keys, String, BTreeSet<String>);

/// A table's shape, comparable between CloudFormation's spelling and DescribeTable's.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    attributes: BTreeSet<(String, String)>,
    keys: Keys,
    indexes: BTreeMap<String, Index>,
    stream: String,
    ttl: String,
    on_demand: bool,
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

fn template_shape(table: &Value) -> Shape {
    let keys = |schema: &Value| {
        schema.as_array().expect("keys").iter().map(|k| (text(&k["AttributeName"]), text(&k["KeyType"]))).collect()
    };
    Shape {
        attributes: table["AttributeDefinitions"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|a| (text(&a["AttributeName"]), text(&a["AttributeType"])))
            .collect(),
        keys: keys(&table["KeySchema"]),
        indexes: table["GlobalSecondaryIndexes"]
            .as_array()
            .expect("indexes")
            .iter()
            .map(|index| {
                let projection = &index["Projection"];
                let extra = projection["NonKeyAttributes"].as_array().into_iter().flatten().map(text).collect();
                (text(&index["IndexName"]), (keys(&index["KeySchema"]), text(&projection["ProjectionType"]), extra))
            })
            .collect(),
        stream: text(&table["StreamSpecification"]["StreamViewType"]),
        ttl: text(&table["TimeToLiveSpecification"]["AttributeName"]),
        on_demand: table["BillingMode"] == "PAY_PER_REQUEST",
    }
}

async fn created_shape() -> Shape {
    use aws_sdk_dynamodb::types::BillingMode;
    let client = aws_sdk_dynamodb::Client::new(&taskfleet_testkit::sdk_config().await);
    let name = taskfleet_testkit::unique_name("deploy-table");
    table::create(&client, &name).await.expect("table::create");
    let table = client.describe_table().table_name(&name).send().await.expect("describe").table.expect("table");
    let ttl = client.describe_time_to_live().table_name(&name).send().await.expect("ttl");
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        schema.iter().map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned())).collect()
    };
    let shape = Shape {
        attributes: table
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
            .collect(),
        keys: keys(table.key_schema()),
        indexes: table
            .global_secondary_indexes()
            .iter()
            .map(|index| {
                let projection = index.projection().expect("projection");
                let kind = projection.projection_type().expect("projection type").as_str().to_owned();
                let extra = projection.non_key_attributes().iter().cloned().collect();
                (index.index_name().expect("name").to_owned(), (keys(index.key_schema()), kind, extra))
            })
            .collect(),
        stream: table.stream_specification().and_then(|s| s.stream_view_type()).expect("stream").as_str().to_owned(),
        ttl: ttl.time_to_live_description().and_then(|d| d.attribute_name()).expect("ttl").to_owned(),
        on_demand: table.billing_mode_summary().and_then(|b| b.billing_mode()) == Some(&BillingMode::PayPerRequest),
    };
    client.delete_table().table_name(&name).send().await.expect("delete");
    shape
}

#[tokio::test]
async fn the_deployed_table_is_the_table_the_code_creates() {
    let template = template();
    let table = &template["Resources"]["TasksTable"]["Properties"];
    assert_eq!(template_shape(table), created_shape().await);
    assert_eq!(table["TimeToLiveSpecification"]["Enabled"], true);
    assert_eq!(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true);
    assert_eq!(template["Resources"]["TasksTable"]["DeletionPolicy"], "Retain");
}

// ---- issue items 10, 11, 13: key-scoped roles, alarms that fire, the concurrency budget ------

/// (action, partition key pattern) of every item action a function's role allows on the tasks
/// table itself (not its indexes or stream). A grant without a `dynamodb:LeadingKeys` condition
/// shows as the pattern `*`.
fn table_item_grants(template: &Value, function: &Value) -> BTreeSet<(String, String)> {
    let table = serde_json::json!({ "Fn::GetAtt": ["TasksTable", "Arn"] });
    let mut pairs = BTreeSet::new();
    for (actions, resource, condition) in grants(template, function) {
        if resource != table {
            continue;
        }
        let patterns: Vec<String> = ["ForAllValues:StringLike", "ForAllValues:StringEquals"]
            .iter()
            .find_map(|operator| condition[*operator]["dynamodb:LeadingKeys"].as_array())
            .map(|values| values.iter().map(text).collect())
            .unwrap_or_else(|| vec!["*".to_owned()]);
        for action in &actions {
            for pattern in &patterns {
                pairs.insert((action.clone(), pattern.clone()));
            }
        }
    }
    pairs
}

#[test]
fn table_item_actions_are_held_to_the_key_prefixes_each_function_touches() {
    let template = template();
    let meta = table::STATUS_SHARDS_ITEM;
    let webhook_secrets = format!("{}*", table::webhook_secret_key(""));
    let webhook_secrets = webhook_secrets.as_str();
    let pairs = |list: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        list.iter().map(|(action, pattern)| (format!("dynamodb:{action}"), (*pattern).to_owned())).collect()
    };
    let expected: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::from([
        (
            "ingest",
            pairs(&[
                ("PutItem", "TASK#*"),
                ("UpdateItem", "TASK#*"),
                ("GetItem", "TASK#*"),
                ("PutItem", "PAYLOAD#*"),
                ("PutItem", "IDEMPOTENCY#*"),
                ("GetItem", "IDEMPOTENCY#*"),
                ("GetItem", "APIKEY#*"),
                ("GetItem", meta),
                ("UpdateItem", meta),
                // Clients' completion-webhook secret records: read at submit, created or
                // rotated (conditional put) by POST /webhook-secret.
                ("GetItem", webhook_secrets),
                ("PutItem", webhook_secrets),
            ]),
        ),
        ("status", pairs(&[("GetItem", "TASK#*"), ("BatchGetItem", "TASK#*"), ("GetItem", "APIKEY#*")])),
        ("webhook", pairs(&[("UpdateItem", "TASK#*"), ("GetItem", "TASK#*")])),
        (
            "caller",
            pairs(&[
                ("UpdateItem", "TASK#*"),
                ("GetItem", "TASK#*"),
                ("GetItem", "PAYLOAD#*"),
                // The fleet-wide hold on new jobs: read, and lengthened.
                ("GetItem", table::HOLD_ITEM),
                ("UpdateItem", table::HOLD_ITEM),
            ]),
        ),
        ("metrics", pairs(&[("GetItem", meta), ("UpdateItem", meta)])),
        ("sweeper", pairs(&[("UpdateItem", "TASK#*"), ("GetItem", "TASK#*"), ("UpdateItem", meta), ("GetItem", meta)])),
        // Reads and records delivery attempts on task items; reads clients' secret records
        // (version and salt: no secret), never writes them (ingest's POST /webhook-secret does).
        ("notifier", pairs(&[("UpdateItem", "TASK#*"), ("GetItem", "TASK#*"), ("GetItem", webhook_secrets)])),
        ("dispatcher", BTreeSet::new()),
    ]);
    for (name, function) in functions(&template) {
        let granted = table_item_grants(&template, function);
        assert!(!granted.iter().any(|(_, pattern)| pattern == "*"), "{name}: a table-wide item grant: {granted:?}");
        assert_eq!(granted, expected[name.as_str()], "{name}");
        if matches!(name.as_str(), "webhook" | "caller" | "sweeper" | "notifier") {
            assert!(!granted.iter().any(|(_, pattern)| pattern.starts_with("APIKEY#")), "{name} reaches API keys");
        }
    }
}

/// A dimension value of the template: a literal or a `Fn::Sub` reference, as written.
fn dimension_value(value: &Value) -> String {
    value.as_str().or_else(|| value["Fn::Sub"].as_str()).map(str::to_owned).unwrap_or_else(|| value.to_string())
}

/// (namespace, metric, dimensions) of every metric a deployed alarm reads, by alarm.
type Watched = BTreeSet<(String, String, BTreeMap<String, String>)>;

fn deployed_alarms(template: &Value) -> BTreeMap<String, (Value, Watched)> {
    let metric = |m: &Value| {
        let dimensions = m["Dimensions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| (text(&d["Name"]), dimension_value(&d["Value"])))
            .collect();
        (text(&m["Namespace"]), text(&m["MetricName"]), dimensions)
    };
    of_type(template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(id, alarm)| {
            let properties = &alarm["Properties"];
            let watched: Watched = match properties["Metrics"].as_array() {
                Some(queries) => queries
                    .iter()
                    .filter(|q| q["MetricStat"].is_object())
                    .map(|q| metric(&q["MetricStat"]["Metric"]))
                    .collect(),
                None => BTreeSet::from([metric(properties)]),
            };
            (id.clone(), (properties.clone(), watched))
        })
        .collect()
}

#[test]
fn alarms_watch_throttles_latency_iterator_age_every_queue_and_account_concurrency() {
    let template = template();
    let alarms = deployed_alarms(&template);
    let watched: Watched = alarms.values().flat_map(|(_, w)| w.clone()).collect();
    let dims = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let mut wanted: Vec<(&str, &str, BTreeMap<String, String>)> = vec![
        ("AWS/Lambda", "IteratorAge", dims(&[("FunctionName", "${DispatcherLambdaFunction}")])),
        ("AWS/Lambda", "ConcurrentExecutions", dims(&[])),
        ("AWS/ApiGateway", "5xx", dims(&[("ApiId", "${HttpApi}")])),
        ("AWS/ApiGateway", "Latency", dims(&[("ApiId", "${HttpApi}")])),
        ("AWS/DynamoDB", "WriteThrottleEvents", dims(&[("TableName", "${TasksTable}")])),
    ];
    for (id, _) in of_type(&template, "AWS::Lambda::Function") {
        wanted.push(("AWS/Lambda", "Throttles", dims(&[("FunctionName", &format!("${{{id}}}"))])));
    }
    for index in template["Resources"]["TasksTable"]["Properties"]["GlobalSecondaryIndexes"].as_array().expect("GSIs") {
        let name = text(&index["IndexName"]);
        wanted.push((
            "AWS/DynamoDB",
            "WriteThrottleEvents",
            dims(&[("TableName", "${TasksTable}"), ("GlobalSecondaryIndexName", &name)]),
        ));
    }
    for (queue, _) in of_type(&template, "AWS::SQS::Queue") {
        for metric in ["ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"] {
            wanted.push(("AWS/SQS", metric, dims(&[("QueueName", &format!("${{{queue}.QueueName}}"))])));
        }
    }
    for (namespace, name, dimensions) in wanted {
        let key = (namespace.to_owned(), name.to_owned(), dimensions);
        assert!(watched.contains(&key), "no alarm watches {key:?}");
    }
    for (id, (properties, _)) in &alarms {
        assert_eq!(properties["AlarmActions"], serde_json::json!([{ "Ref": "AlarmTopic" }]), "{id} notifies no one");
    }
}

/// The expression an alarm evaluates (its `ReturnData` query), and the ids of its metrics.
fn returned_expression(properties: &Value) -> (String, Vec<String>) {
    let queries = properties["Metrics"].as_array().expect("a metric math alarm");
    let returned = queries.iter().find(|q| q["ReturnData"] == true).expect("a returned query");
    let ids = queries.iter().filter(|q| q["MetricStat"].is_object()).map(|q| text(&q["Id"])).collect();
    (text(&returned["Expression"]), ids)
}

#[test]
fn the_task_failure_rate_counts_missing_completions_as_zero() {
    let template = template();
    let alarms = deployed_alarms(&template);
    let (properties, _) = &alarms["TaskFailureRateAlarm"];
    let (expression, ids) = returned_expression(properties);
    assert_eq!(ids.len(), 2, "{expression}");
    for id in ids {
        // Every use of a metric is filled: a period with failures and no completions (or the
        // other way round) still has a datapoint.
        let bare = expression.replace(&format!("FILL({id}, 0)"), "");
        assert!(
            !bare.split(|c: char| !c.is_alphanumeric() && c != '_').any(|word| word == id),
            "{id} is used unfilled in {expression}"
        );
        assert!(expression.contains(&format!("FILL({id}, 0)")), "{id} not in {expression}");
    }
}

#[test]
fn stuck_tasks_alarm_only_on_more_overdue_than_a_sweep_handles_or_a_sweeper_that_does_not_sweep() {
    let template = template();
    let alarms = deployed_alarms(&template);
    let (properties, watched) = &alarms["StuckTasksAlarm"];
    let sweeper = functions(&template)["sweeper"];
    let batch = whole(&sweeper["Properties"]["Environment"]["Variables"][config::SWEEP_BATCH]);
    // Not `TasksOverdue > 0`: at scale some task is always a few seconds past its deadline.
    assert_eq!(whole(&properties["Threshold"]), batch, "threshold: one sweep's batch");
    let function = BTreeMap::from([("FunctionName".to_owned(), "${SweeperLambdaFunction}".to_owned())]);
    for metric in ["Invocations", "Errors"] {
        assert!(watched.contains(&("AWS/Lambda".to_owned(), metric.to_owned(), function.clone())), "{metric}");
    }
    let (expression, _) = returned_expression(properties);
    assert!(expression.contains("FILL(runs, 0) == 0") && expression.contains("FILL(errors, 0) > 0"), "{expression}");
}

#[test]
fn the_jobs_queue_alarms_count_due_timers_and_leave_delayed_ones_alone() {
    use taskfleet_core::dispatch::MAX_DELAY_SECONDS;
    let template = template();
    let alarms = deployed_alarms(&template);
    let queue = BTreeMap::from([("QueueName".to_owned(), "${JobsQueue.QueueName}".to_owned())]);
    // Backlog: visible messages are due timers (delayed ones are counted apart, in
    // ApproximateNumberOfMessagesDelayed), so a deadline timer waiting out its 900 s never
    // counts; only a backlog that lasts five minutes running fires, not a burst the caller drains.
    let (backlog, watched) = &alarms["JobsBacklogAlarm"];
    let visible = ("AWS/SQS".to_owned(), "ApproximateNumberOfMessagesVisible".to_owned(), queue.clone());
    assert_eq!(watched, &BTreeSet::from([visible]));
    assert_eq!(backlog["ComparisonOperator"], "GreaterThanThreshold");
    assert!(whole(&backlog["Threshold"]) > 0);
    let periods = whole(&backlog["EvaluationPeriods"]);
    assert!(periods >= 5 && whole(&backlog["DatapointsToAlarm"]) == periods, "not sustained: {backlog}");
    // Age: a timer is as old as its delay (up to 900 s) when it comes due, and a message SQS
    // delivered up to three times still counts (after that the metric skips it): the threshold
    // stays above both, so only timers nobody reads fire it.
    let (age, watched) = &alarms["JobsQueueAgeAlarm"];
    let oldest = ("AWS/SQS".to_owned(), "ApproximateAgeOfOldestMessage".to_owned(), queue);
    assert_eq!(watched, &BTreeSet::from([oldest]));
    let visibility = whole(&template["Resources"]["JobsQueue"]["Properties"]["VisibilityTimeout"]);
    let floor = u64::from(MAX_DELAY_SECONDS) + 3 * visibility;
    assert!(whole(&age["Threshold"]) >= floor, "age threshold {} s below {floor} s", age["Threshold"]);
}

#[test]
fn the_dashboard_draws_every_metric_an_alarm_watches() {
    let drawn: BTreeSet<(String, String, BTreeMap<String, String>)> = dashboard_rows()
        .into_iter()
        .filter_map(|row| match row {
            Row::Metric(m) => Some((m.namespace, m.name, m.dimensions)),
            Row::Expression { .. } => None,
        })
        .collect();
    for (alarm, rows) in alarm_rows() {
        for row in rows {
            if let Row::Metric(m) = row {
                let key = (m.namespace, m.name, m.dimensions);
                assert!(drawn.contains(&key), "{alarm} watches {key:?}, which the dashboard does not draw");
            }
        }
    }
}

#[test]
fn the_schedules_run_one_at_a_time() {
    let template = template();
    for (name, function) in functions(&template) {
        let reserved = &function["Properties"]["ReservedConcurrentExecutions"];
        match name.as_str() {
            "metrics" | "sweeper" => assert_eq!(whole(reserved), 1, "{name}: a duplicate delivery runs twice at once"),
            _ => assert!(reserved.is_null(), "{name} reserves concurrency: {reserved}"),
        }
    }
}

#[test]
fn the_callback_routes_have_limits_of_their_own_and_every_route_keeps_detailed_metrics() {
    let template = template();
    let stage = &template["Resources"]["HttpApiStage"];
    let defaults = &stage["Properties"]["DefaultRouteSettings"];
    // provider.httpApi.metrics: the stage override must not drop it.
    assert_eq!(defaults["DetailedMetricsEnabled"], true, "{defaults}");
    let client_rate = whole(&defaults["ThrottlingRateLimit"]);
    let routes: BTreeMap<String, &String> = of_type(&template, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .map(|(id, route)| (text(&route["Properties"]["RouteKey"]), id))
        .collect();
    let settings = stage["Properties"]["RouteSettings"].as_object().expect("RouteSettings");
    let callbacks: BTreeSet<&String> = settings.keys().collect();
    let webhook_routes: BTreeSet<&String> = routes.keys().filter(|key| key.starts_with("POST /callbacks/")).collect();
    assert_eq!(callbacks, webhook_routes, "route settings for exactly the callback routes");
    let depends: BTreeSet<String> = stage["DependsOn"].as_array().expect("DependsOn").iter().map(text).collect();
    for (key, route) in settings {
        assert_eq!(route["DetailedMetricsEnabled"], true, "{key}");
        assert!(whole(&route["ThrottlingRateLimit"]) >= client_rate, "{key}: below the client routes' rate");
        assert!(whole(&route["ThrottlingBurstLimit"]) > 0, "{key}");
        // RouteSettings name routes by key: the stage must be created after them.
        assert!(depends.contains(routes[key].as_str()), "the stage does not wait for {key}");
    }
}

#[test]
fn make_deploy_checks_the_secret_and_lints_the_template_it_deploys() {
    let script = read("scripts/deploy.sh");
    let at = |needle: &str| script.find(needle).unwrap_or_else(|| panic!("scripts/deploy.sh has no `{needle}`"));
    let secret = at("aws secretsmanager describe-secret");
    let lint = at("bash scripts/lint-template.sh");
    let deploy = at("npx --no-install serverless deploy");
    assert!(secret < deploy && lint < deploy, "the checks run after the deploy");
    // The secret's ARN it found is what the template is packaged (and deployed) with.
    let params = at("params=(--param \"webhookSecretArn=$secret_arn\")");
    let packaged = at("serverless_package \"$ARCH\"");
    assert!(secret < params && params < packaged && packaged < lint, "the secret is not looked up before packaging");
    for part in [&script[packaged..lint], &script[deploy..]] {
        assert!(part.contains("\"${params[@]}\""), "not packaged and deployed with the same parameters");
    }
    // What is deployed is the template that was linted.
    assert!(script[deploy..].contains("--package \"$package\""), "deploy does not use the linted package");
    assert!(script[lint..deploy].contains("$package/cloudformation-template-update-stack.json"));
}

// ---- issue item 9: signing secrets read at run time, from one secret -------------------------

#[test]
fn signing_secrets_are_read_at_run_time_from_one_secret_and_never_put_in_the_environment() {
    let template = template();
    // No dynamic reference resolves a secret into the template (and so into an environment
    // variable readable with lambda:GetFunctionConfiguration).
    let text = template.to_string();
    assert!(!text.contains("{{resolve:"), "a dynamic reference in the template");
    for (name, function) in functions(&template) {
        let variables = function["Properties"]["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        assert!(!variables.contains_key(config::WEBHOOK_SIGNING_SECRETS), "{name} is given the secrets' value");
        let arn = variables.get(config::WEBHOOK_SIGNING_SECRET_ARN);
        let signs = matches!(name.as_str(), "caller" | "webhook");
        assert_eq!(arn.is_some(), signs, "{name}: {}", config::WEBHOOK_SIGNING_SECRET_ARN);
        // Every grant on Secrets Manager: GetSecretValue on exactly the secret the function reads.
        // (The completion-webhook master key's grant is checked on its own, below.)
        let master = variables.get(config::WEBHOOK_MASTER_KEY_ARN);
        let secret_grants: Vec<(BTreeSet<String>, Value)> =
            secret_grants(&template, function).into_iter().filter(|(_, resource)| Some(resource) != master).collect();
        if !signs {
            assert!(secret_grants.is_empty(), "{name} may read secrets: {secret_grants:?}");
            continue;
        }
        let arn = text_of(arn.expect("the secret's ARN"));
        let parts: Vec<&str> = arn.split(':').collect();
        assert!(
            parts.len() == 7 && parts[..3] == ["arn", "aws", "secretsmanager"] && parts[5] == "secret",
            "{name}: {arn} is not a secret's ARN"
        );
        assert!(!arn.contains(['*', '?']), "{name}: a wildcard in {arn}");
        let one = (BTreeSet::from(["secretsmanager:GetSecretValue".to_owned()]), Value::String(arn.clone()));
        assert_eq!(secret_grants, [one], "{name}: GetSecretValue on {arn} alone");
    }
    // The two read the same secret.
    let deployed = functions(&template);
    let arn_of = |name: &str| {
        deployed[name]["Properties"]["Environment"]["Variables"][config::WEBHOOK_SIGNING_SECRET_ARN].clone()
    };
    assert_eq!(arn_of("caller"), arn_of("webhook"));
}

/// Every grant on Secrets Manager of a function's role: (actions, resource), none conditional.
fn secret_grants(template: &Value, function: &Value) -> Vec<(BTreeSet<String>, Value)> {
    grants(template, function)
        .into_iter()
        .filter(|(actions, _, _)| actions.iter().any(|a| a.starts_with("secretsmanager:")))
        .map(|(actions, resource, condition)| {
            assert!(condition.is_null(), "conditional secret grant {condition}");
            (actions, resource)
        })
        .collect()
}

#[test]
fn the_completion_webhook_master_key_is_read_from_its_one_secret_by_ingest_and_never_put_in_the_environment() {
    let template = template();
    let mut readers = BTreeSet::new();
    for (name, function) in functions(&template) {
        let variables = function["Properties"]["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        assert!(!variables.contains_key(config::WEBHOOK_MASTER_KEY), "{name} is given the master key's value");
        assert!(!variables.contains_key(config::WEBHOOK_ALLOW_LOOPBACK), "{name}: loopback receivers are local only");
        let Some(arn) = variables.get(config::WEBHOOK_MASTER_KEY_ARN) else {
            assert!(
                !secret_grants(&template, function)
                    .iter()
                    .any(|(_, resource)| text_of(resource).contains("master-key")),
                "{name} may read the master key"
            );
            continue;
        };
        readers.insert(name.clone());
        let arn = text_of(arn);
        let parts: Vec<&str> = arn.split(':').collect();
        assert!(parts.len() == 7 && parts[..3] == ["arn", "aws", "secretsmanager"], "{name}: {arn}");
        assert!(!arn.contains(['*', '?']), "{name}: a wildcard in {arn}");
        let grant = (BTreeSet::from(["secretsmanager:GetSecretValue".to_owned()]), Value::String(arn.clone()));
        assert!(secret_grants(&template, function).contains(&grant), "{name}: GetSecretValue on {arn}");
    }
    assert!(readers.contains("ingest"), "POST /webhook-secret derives secrets from the master key");
    assert!(readers.contains("notifier"), "the notifier signs each delivery with a secret derived from it");
}

#[test]
fn post_webhook_secret_is_served_by_ingest() {
    let template = template();
    let routes: Vec<&Value> = of_type(&template, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .map(|(_, route)| &route["Properties"])
        .filter(|route| route["RouteKey"] == "POST /webhook-secret")
        .collect();
    assert_eq!(routes.len(), 1, "one POST /webhook-secret route");
    let integration = routes[0]["Target"]["Fn::Join"][1][1]["Ref"].as_str().expect("integration");
    let uri = &template["Resources"][integration]["Properties"]["IntegrationUri"];
    assert_eq!(invoked_alias(&template, uri).as_deref(), Some("ingest"));
}

/// A string of the template.
fn text_of(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a plain string: {value}")).to_owned()
}

/// Deploy settings that deliberately differ from the code's default, with the reason (the
/// README's deploy parameters say the same). Empty: every deployed setting is the code's default.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[];

#[test]
fn deploy_defaults_are_the_code_defaults_or_a_documented_difference() {
    use taskfleet_core::TtlPolicy;
    use taskfleet_core::policy::Policies;
    use taskfleet_core::retry::RetryPolicy;
    let code: BTreeMap<&str, String> = BTreeMap::from([
        (config::MAX_ATTEMPTS, RetryPolicy::DEFAULT_MAX_ATTEMPTS.to_string()),
        (config::RETRY_BASE_SECONDS, RetryPolicy::DEFAULT_BASE_DELAY.as_secs().to_string()),
        (config::RETRY_MAX_SECONDS, RetryPolicy::DEFAULT_MAX_DELAY.as_secs().to_string()),
        (config::CALLBACK_TIMEOUT_SECONDS, Policies::DEFAULT_CALLBACK_TIMEOUT.as_secs().to_string()),
        (config::DISPATCH_GRACE_SECONDS, Policies::DEFAULT_DISPATCH_GRACE.as_secs().to_string()),
        (config::TASK_TTL_SECONDS, TtlPolicy::DEFAULT_TASK_TTL_SECONDS.to_string()),
        (config::RESULT_RETENTION_SECONDS, TtlPolicy::DEFAULT_RESULT_RETENTION_SECONDS.to_string()),
        (config::STATUS_INDEX_SHARDS, table::DEFAULT_STATUS_SHARDS.to_string()),
        (config::INLINE_MAX_BYTES, taskfleet_core::blob::DEFAULT_INLINE_MAX_BYTES.to_string()),
        (config::API_KEY_CACHE_SECONDS, config::DEFAULT_API_KEY_CACHE_SECONDS.to_string()),
        (config::SWEEP_BATCH, config::DEFAULT_SWEEP_BATCH.to_string()),
        (config::CALLER_CONCURRENCY, config::DEFAULT_CALLER_CONCURRENCY.to_string()),
        (config::EXTERNAL_TIMEOUT_MS, config::DEFAULT_EXTERNAL_TIMEOUT_MS.to_string()),
        (config::NOTIFIER_CONCURRENCY, config::DEFAULT_NOTIFIER_CONCURRENCY.to_string()),
        (config::WEBHOOK_TIMEOUT_MS, taskfleet_adapters::completion::DEFAULT_DELIVERY_TIMEOUT.as_millis().to_string()),
        (config::METRICS_NAMESPACE, config::DEFAULT_METRICS_NAMESPACE.to_owned()),
    ]);
    let template = template();
    let mut differences = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (name, function) in functions(&template) {
        let variables = function["Properties"]["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        for (variable, value) in variables {
            let Some(default) = code.get(variable.as_str()) else { continue };
            seen.insert(variable.clone());
            let deployed = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            if &deployed != default {
                differences.insert(variable.clone());
                assert!(
                    DELIBERATE_DIFFERENCES.iter().any(|(v, _)| *v == variable),
                    "{name}: {variable} is deployed as {deployed}, the code's default is {default}"
                );
            }
        }
    }
    assert_eq!(seen.len(), code.len(), "settings with a code default that nothing deploys: {seen:?}");
    let listed: BTreeSet<String> = DELIBERATE_DIFFERENCES.iter().map(|(v, _)| (*v).to_owned()).collect();
    assert_eq!(differences, listed, "DELIBERATE_DIFFERENCES lists a setting that no longer differs");
    let readme = read("README.md");
    for (variable, _) in DELIBERATE_DIFFERENCES {
        assert!(readme.contains(&format!("deliberately differs: `{variable}`")), "README does not document {variable}");
    }
}

// ---- issue item 12: safe deploys -------------------------------------------------------------

/// The alias (logical id, resource) of a function (by serverless.yml name): exactly one.
fn alias_of<'a>(template: &'a Value, function: &str) -> (&'a String, &'a Value) {
    let id = format!("{}LambdaFunction", capitalised(function));
    let aliases: Vec<(&String, &Value)> = of_type(template, "AWS::Lambda::Alias")
        .into_iter()
        .filter(|(_, alias)| alias["Properties"]["FunctionName"] == serde_json::json!({ "Ref": id }))
        .collect();
    let [alias] = aliases.as_slice() else { panic!("one alias of {function} expected: {aliases:?}") };
    *alias
}

/// The function (serverless.yml name) whose alias `target` names as `<function ARN>:<alias>`,
/// the alias being that function's alias resource; None for anything else (the function's
/// unqualified ARN, `$LATEST`, a version).
fn invoked_alias(template: &Value, target: &Value) -> Option<String> {
    let [separator, parts] = target["Fn::Join"].as_array()?.as_slice() else { return None };
    let [arn, qualifier] = parts.as_array()?.as_slice() else { return None };
    let id = arn["Fn::GetAtt"][0].as_str()?;
    if separator != ":" || arn["Fn::GetAtt"][1] != "Arn" || !id.ends_with("LambdaFunction") {
        return None;
    }
    let function = function_name(id);
    let (_, alias) = alias_of(template, &function);
    (qualifier == &alias["Properties"]["Name"]).then_some(function)
}

/// `DependsOn` as a set of logical ids.
fn depends_on(resource: &Value) -> BTreeSet<String> {
    match &resource["DependsOn"] {
        Value::String(one) => BTreeSet::from([one.clone()]),
        Value::Array(many) => many.iter().map(text).collect(),
        _ => BTreeSet::new(),
    }
}

#[test]
fn every_trigger_invokes_its_functions_alias_never_latest() {
    let template = template();
    let mut triggered = BTreeSet::new();
    // (resource type, the property that names the function) of every kind of trigger.
    let mut targets: Vec<(String, &Value, &Value)> = Vec::new();
    for (kind, property) in [
        ("AWS::Lambda::EventSourceMapping", "FunctionName"),
        ("AWS::ApiGatewayV2::Integration", "IntegrationUri"),
        ("AWS::Lambda::Permission", "FunctionName"),
    ] {
        for (id, resource) in of_type(&template, kind) {
            targets.push((format!("{kind} {id}"), resource, &resource["Properties"][property]));
        }
    }
    for (id, rule) in of_type(&template, "AWS::Events::Rule") {
        for target in rule["Properties"]["Targets"].as_array().expect("targets") {
            targets.push((format!("AWS::Events::Rule {id}"), rule, &target["Arn"]));
        }
    }
    assert!(targets.len() >= 7 + 2 + 3, "triggers missing: {}", targets.len());
    for (what, resource, target) in targets {
        let function =
            invoked_alias(&template, target).unwrap_or_else(|| panic!("{what} invokes {target}, not an alias"));
        // Created after the alias, so the first deploy never points at a missing one.
        let (alias_id, _) = alias_of(&template, &function);
        assert!(depends_on(resource).contains(alias_id), "{what} does not wait for {alias_id}");
        triggered.insert(function);
    }
    let deployed: BTreeSet<String> = functions(&template).into_keys().collect();
    assert_eq!(triggered, deployed, "a function without a trigger, or one outside the stack");
    // The async invoke settings of the schedules (no retries, a minute's age) apply where the
    // schedules invoke: on the alias.
    for (id, config) in of_type(&template, "AWS::Lambda::EventInvokeConfig") {
        let function = config["Properties"]["FunctionName"]["Ref"].as_str().map(function_name).expect("a function");
        let (alias_id, alias) = alias_of(&template, &function);
        assert_eq!(config["Properties"]["Qualifier"], alias["Properties"]["Name"], "{id} is not on the alias");
        assert!(depends_on(config).contains(alias_id), "{id}");
    }
    // The unqualified ARN of a function is used nowhere else: nothing invokes $LATEST.
    fn unqualified(value: &Value, inside_join: bool, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some([id, attribute]) = map.get("Fn::GetAtt").and_then(Value::as_array).map(Vec::as_slice)
                    && attribute == "Arn"
                    && id.as_str().is_some_and(|id| id.ends_with("LambdaFunction"))
                    && !inside_join
                {
                    found.push(id.to_string());
                }
                let join = map.get("Fn::Join").and_then(|j| j[0].as_str()) == Some(":");
                for (key, child) in map {
                    unqualified(child, join && key == "Fn::Join", found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| unqualified(item, inside_join, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    unqualified(&template["Resources"], false, &mut found);
    assert!(found.is_empty(), "unqualified function ARNs in the template: {found:?}");
}

/// Minutes a CodeDeploy Lambda configuration keeps part of the traffic on the old version
/// (0: all at once).
fn shifting_minutes(config: &str) -> u64 {
    let name = config.strip_prefix("CodeDeployDefault.Lambda").unwrap_or_else(|| panic!("{config}"));
    if name == "AllAtOnce" {
        return 0;
    }
    let number = |text: &str| text.trim_end_matches("Minutes").trim_end_matches("Minute").parse::<u64>().ok();
    if let Some(minutes) = name.strip_prefix("Canary10Percent").and_then(number) {
        return minutes;
    }
    // Ten steps of 10 %: the last one at 9 x the interval.
    name.strip_prefix("Linear10PercentEvery")
        .and_then(number)
        .map(|every| 9 * every)
        .unwrap_or_else(|| panic!("{config}"))
}

#[test]
fn every_alias_is_moved_by_codedeploy_and_rolled_back_on_the_alarms_a_bad_version_sets_off() {
    let template = template();
    let resources = &template["Resources"];
    let alarms = deployed_alarms(&template);
    let application = &resources["CodeDeployApplication"];
    assert_eq!(application["Type"], "AWS::CodeDeploy::Application");
    assert_eq!(application["Properties"]["ComputePlatform"], "Lambda");
    let routed: BTreeSet<String> = ROUTES.iter().map(|route| format!("{:?}", route.function).to_lowercase()).collect();
    for (name, function) in functions(&template) {
        let (alias_id, alias) = alias_of(&template, &name);
        // On the version this package publishes (its id hashes the code and configuration).
        let version = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0].as_str().expect("a version");
        assert_eq!(resources[version]["Type"], "AWS::Lambda::Version", "{name}");
        assert_eq!(
            resources[version]["Properties"]["FunctionName"],
            serde_json::json!({ "Ref": format!("{}LambdaFunction", capitalised(&name)) })
        );
        assert!(function["Properties"]["Code"].is_object(), "{name}");
        // Moved by CodeDeploy, through the function's own deployment group.
        let policy = &alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"];
        assert_eq!(policy["ApplicationName"], serde_json::json!({ "Ref": "CodeDeployApplication" }), "{alias_id}");
        let group_id = policy["DeploymentGroupName"]["Ref"].as_str().unwrap_or_else(|| panic!("{alias_id}: no group"));
        assert!(depends_on(alias).contains(group_id), "{alias_id} may be created before {group_id}");
        let group = &resources[group_id]["Properties"];
        assert_eq!(resources[group_id]["Type"], "AWS::CodeDeploy::DeploymentGroup");
        assert_eq!(group["ApplicationName"], serde_json::json!({ "Ref": "CodeDeployApplication" }));
        assert_eq!(group["ServiceRoleArn"], serde_json::json!({ "Fn::GetAtt": ["CodeDeployRole", "Arn"] }));
        assert_eq!(
            group["DeploymentStyle"],
            serde_json::json!({ "DeploymentType": "BLUE_GREEN", "DeploymentOption": "WITH_TRAFFIC_CONTROL" })
        );
        // Rolled back on a failed or stopped deployment and on an alarm, the alarms being the
        // function errors, throttles and HTTP 5xx of deploy/alarms.json.
        let rollback = &group["AutoRollbackConfiguration"];
        assert_eq!(rollback["Enabled"], true, "{group_id}");
        let events: BTreeSet<String> = rollback["Events"].as_array().expect("events").iter().map(text).collect();
        for event in ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"] {
            assert!(events.contains(event), "{group_id}: no rollback on {event}");
        }
        assert_eq!(group["AlarmConfiguration"]["Enabled"], true, "{group_id}");
        let watched: BTreeSet<String> = group["AlarmConfiguration"]["Alarms"]
            .as_array()
            .expect("alarms")
            .iter()
            .map(|alarm| text(&alarm["Name"]["Ref"]))
            .collect();
        assert_eq!(
            watched,
            BTreeSet::from([
                "LambdaErrorsAlarm".to_owned(),
                "LambdaThrottlesAlarm".to_owned(),
                "HttpApi5xxAlarm".to_owned()
            ]),
            "{group_id}"
        );
        // Long enough for an alarm to fire while part of the traffic is still on the old
        // version: more minutes than its evaluation window.
        let window = watched
            .iter()
            .map(|alarm| {
                let (properties, _) = &alarms[alarm];
                // A single metric's period, or the period of a metric math alarm's metrics.
                let period = match properties["Metrics"].as_array() {
                    Some(queries) => queries.iter().filter_map(|q| q["MetricStat"]["Period"].as_u64()).max(),
                    None => properties["Period"].as_u64(),
                };
                whole(&properties["EvaluationPeriods"]) * period.expect("a period").max(60) / 60
            })
            .max()
            .expect("alarms");
        let config = text(&group["DeploymentConfigName"]);
        let minutes = shifting_minutes(&config);
        match name.as_str() {
            // Once a minute, one run at a time: a canary would hand the new version about one run
            // in ten; all at once, and a bad run is replaced a minute later.
            "metrics" | "sweeper" => assert_eq!(config, "CodeDeployDefault.LambdaAllAtOnce", "{name}"),
            _ => assert!(minutes > window, "{name}: {config} shifts within {minutes} min, the alarms need {window}"),
        }
        if routed.contains(&name) {
            assert!(config.starts_with("CodeDeployDefault.LambdaCanary10Percent"), "{name}: {config}");
        }
    }
}

#[test]
fn codedeploy_may_move_only_this_stacks_aliases_and_read_only_its_rollback_alarms() {
    let template = template();
    let role = &template["Resources"]["CodeDeployRole"]["Properties"];
    let principal = &role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"];
    assert_eq!(principal, "codedeploy.amazonaws.com");
    assert!(role["ManagedPolicyArns"].is_null(), "a managed policy grants more than the stack's aliases");
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for policy in role["Policies"].as_array().expect("policies") {
        for statement in policy["PolicyDocument"]["Statement"].as_array().expect("statements") {
            assert_eq!(statement["Effect"], "Allow");
            for action in statement["Action"].as_array().expect("actions") {
                let resources = statement["Resource"].as_array().expect("resources");
                granted.entry(text(action)).or_default().extend(resources.iter().map(Value::to_string));
            }
        }
    }
    let aliases: BTreeSet<String> = functions(&template)
        .into_keys()
        .map(|name| {
            let (_, alias) = alias_of(&template, &name);
            let name = alias["Properties"]["Name"].as_str().expect("alias name");
            serde_json::json!({ "Fn::Sub": format!("${{{}LambdaFunction.Arn}}:{name}", capitalised(&function_name_of(alias))) })
                .to_string()
        })
        .collect();
    let alarms: BTreeSet<String> = ["LambdaErrorsAlarm", "LambdaThrottlesAlarm", "HttpApi5xxAlarm"]
        .iter()
        .map(|alarm| serde_json::json!({ "Fn::GetAtt": [alarm, "Arn"] }).to_string())
        .collect();
    let expected = BTreeMap::from([
        ("lambda:GetAlias".to_owned(), aliases.clone()),
        ("lambda:UpdateAlias".to_owned(), aliases.clone()),
        ("lambda:GetProvisionedConcurrencyConfig".to_owned(), aliases),
        ("cloudwatch:DescribeAlarms".to_owned(), alarms),
    ]);
    assert_eq!(granted, expected);
}

/// The serverless.yml name of the function an alias belongs to.
fn function_name_of(alias: &Value) -> String {
    function_name(alias["Properties"]["FunctionName"]["Ref"].as_str().expect("a function"))
}

#[test]
fn a_retained_resource_has_no_fixed_name_so_a_failed_first_deploy_cannot_block_the_next() {
    // A first deploy that fails rolls back and keeps what has DeletionPolicy Retain; with a
    // fixed name the next deploy would fail to create it again ("already exists").
    let template = template();
    let mut retained = BTreeSet::new();
    for (id, resource) in template["Resources"].as_object().expect("resources") {
        if resource["DeletionPolicy"] != "Retain" || resource["Type"] == "AWS::Lambda::Version" {
            continue;
        }
        retained.insert(id.as_str());
        let properties = resource["Properties"].as_object().cloned().unwrap_or_default();
        let named: Vec<&String> = properties
            .keys()
            .filter(|key| {
                matches!(key.as_str(), "TableName" | "BucketName" | "QueueName" | "TopicName" | "LogGroupName")
            })
            .collect();
        assert!(named.is_empty(), "{id} is retained under a fixed name: {named:?}");
    }
    assert_eq!(retained, BTreeSet::from(["BlobsBucket", "TasksTable"]));
    // Ops find the table by the stack's output.
    assert_eq!(template["Outputs"]["TasksTableName"]["Value"], serde_json::json!({ "Ref": "TasksTable" }));
}
