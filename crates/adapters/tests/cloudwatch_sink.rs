//! CloudWatchSink against the AWS emulator (moto server) through the real SDK: the metrics cron's
//! gauges, computed from a real table's status index (active tasks only), land in CloudWatch
//! with their names, `Status` dimension and values.
//!
//! Needs `AWS_ENDPOINT_URL` (see `taskfleet_testkit`); every test uses its own namespace.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{StandardUnit, Statistic};
use common::{fresh_store, insert, task_in};
use taskfleet_adapters::CloudWatchSink;
use taskfleet_core::metrics::{self, Gauge, Unit};
use taskfleet_core::ports::MetricsSink;
use taskfleet_core::{TaskStatus, Timestamp, service};

/// (metric name, Status dimension value) → value, as CloudWatch reports the latest datum.
type Readings = BTreeMap<(String, Option<String>), f64>;

async fn sink() -> (CloudWatchSink, aws_sdk_cloudwatch::Client, String) {
    let sdk = taskfleet_testkit::sdk_config().await;
    let client = aws_sdk_cloudwatch::Client::new(&sdk);
    let namespace = taskfleet_testkit::unique_name("TaskFleetTest");
    (CloudWatchSink::new(client.clone(), namespace.clone()), client, namespace)
}

/// Every metric of `namespace` (ListMetrics) with its value (GetMetricStatistics, Maximum over
/// the last ten minutes). Not GetMetricData: moto 5.2.1 ignores the namespace of a GetMetricData
/// query that names dimensions, so parallel tests would read each other's metrics.
async fn read_back(client: &aws_sdk_cloudwatch::Client, namespace: &str) -> Readings {
    let listed =
        client.list_metrics().namespace(namespace).send().await.expect("ListMetrics").metrics.unwrap_or_default();
    let now = SystemTime::now();
    let mut readings = Readings::new();
    for metric in &listed {
        let name = metric.metric_name().expect("metric name");
        let dimensions = metric.dimensions();
        assert!(dimensions.len() <= 1, "{metric:?}");
        let status = dimensions.first().map(|d| {
            assert_eq!(d.name(), Some(metrics::STATUS_DIMENSION), "{metric:?}");
            d.value().expect("dimension value").to_owned()
        });
        let statistics = client
            .get_metric_statistics()
            .namespace(namespace)
            .metric_name(name)
            .set_dimensions(Some(dimensions.to_vec()))
            .start_time(DateTime::from(now - Duration::from_secs(600)))
            .end_time(DateTime::from(now + Duration::from_secs(60)))
            .period(60)
            .statistics(Statistic::Maximum)
            .statistics(Statistic::SampleCount)
            .send()
            .await
            .expect("GetMetricStatistics");
        let points = statistics.datapoints();
        assert_eq!(points.len(), 1, "one datum per gauge: {metric:?} {points:?}");
        assert_eq!(points[0].sample_count(), Some(1.0), "{metric:?} {points:?}");
        let unit = if name == metrics::OLDEST_RECEIVED_AGE { StandardUnit::Seconds } else { StandardUnit::Count };
        assert_eq!(points[0].unit(), Some(&unit), "{metric:?} {points:?}");
        let previous = readings.insert((name.to_owned(), status), points[0].maximum().expect("maximum"));
        assert_eq!(previous, None, "listed twice: {metric:?}");
    }
    readings
}

fn key(name: &str, status: Option<&str>) -> (String, Option<String>) {
    (name.to_owned(), status.map(str::to_owned))
}

#[tokio::test]
async fn the_crons_gauges_arrive_with_names_dimensions_and_values() {
    let store = fresh_store().await;
    let now = Timestamp::now();
    let ago = |seconds: i64| now.as_millis() - seconds * 1000;
    for (status, due_at) in [
        (TaskStatus::Received, ago(90)), // the earliest due RECEIVED: waiting 90 s
        (TaskStatus::Received, ago(10)),
        (TaskStatus::Received, ago(-30)), // a retry waiting for its time
        (TaskStatus::InProgress, ago(5)), // its callback is overdue
        (TaskStatus::InProgress, ago(-600)),
        (TaskStatus::InProgress, ago(-1_200)),
        // Finished tasks are in no gauge (the per-event metrics count them as they finish),
        // even those due earlier than every active one.
        (TaskStatus::Done, ago(60)),
        (TaskStatus::Done, ago(120)),
        (TaskStatus::Failed, ago(30)),
        (TaskStatus::Failed, ago(3_601)),
    ] {
        insert(&store, &task_in(status, due_at)).await;
    }
    let gauges = service::gauges(&store, now).await.unwrap();
    assert_eq!(
        gauges,
        [
            Gauge { name: metrics::TASKS_ACTIVE, status: Some(TaskStatus::Received), value: 3.0, unit: Unit::Count },
            Gauge { name: metrics::TASKS_ACTIVE, status: Some(TaskStatus::InProgress), value: 3.0, unit: Unit::Count },
            Gauge { name: metrics::TASKS_OVERDUE, status: None, value: 1.0, unit: Unit::Count },
            Gauge { name: metrics::OLDEST_RECEIVED_AGE, status: None, value: 90.0, unit: Unit::Seconds },
        ]
    );

    let (sink, client, namespace) = sink().await;
    sink.put(&gauges).await.expect("PutMetricData");

    let readings = read_back(&client, &namespace).await;
    assert_eq!(
        readings,
        Readings::from([
            (key("TasksActive", Some("RECEIVED")), 3.0),
            (key("TasksActive", Some("IN_PROGRESS")), 3.0),
            (key("TasksOverdue", None), 1.0),
            (key("OldestReceivedAgeSeconds", None), 90.0),
        ])
    );
}

#[tokio::test]
async fn fractional_and_zero_values_are_kept() {
    let (sink, client, namespace) = sink().await;
    sink.put(&[
        Gauge { name: metrics::OLDEST_RECEIVED_AGE, status: None, value: 12.345, unit: Unit::Seconds },
        Gauge { name: metrics::TASKS_ACTIVE, status: Some(TaskStatus::Received), value: 0.0, unit: Unit::Count },
    ])
    .await
    .expect("PutMetricData");

    assert_eq!(
        read_back(&client, &namespace).await,
        Readings::from([(key("OldestReceivedAgeSeconds", None), 12.345), (key("TasksActive", Some("RECEIVED")), 0.0),])
    );
}
