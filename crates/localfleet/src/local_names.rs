//! What the placeholders of deploy/dashboard.json and deploy/alarms.json name locally. In AWS,
//! CloudFormation fills in `${IngestLambdaFunction}` (the function's name), `${HttpApi}` (the
//! API id), `${JobsQueue.QueueName}` …; here they are the local fleet's own names, under which
//! it publishes the AWS metrics ([`crate::aws_metrics`]), so the same definitions read them.

use crate::resources::Names;

/// The eight functions, as serverless.yml declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    Ingest,
    Status,
    Webhook,
    Dispatcher,
    Caller,
    Notifier,
    Metrics,
    Sweeper,
}

impl Function {
    pub const ALL: [Function; 8] = [
        Function::Ingest,
        Function::Status,
        Function::Webhook,
        Function::Dispatcher,
        Function::Caller,
        Function::Notifier,
        Function::Metrics,
        Function::Sweeper,
    ];

    /// Its key under `functions:` in serverless.yml.
    pub fn key(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::Status => "status",
            Function::Webhook => "webhook",
            Function::Dispatcher => "dispatcher",
            Function::Caller => "caller",
            Function::Notifier => "notifier",
            Function::Metrics => "metrics",
            Function::Sweeper => "sweeper",
        }
    }

    /// The CloudFormation logical id serverless gives it (`IngestLambdaFunction`).
    pub fn logical_id(self) -> String {
        let key = self.key();
        format!("{}{}LambdaFunction", key[..1].to_ascii_uppercase(), &key[1..])
    }
}

/// The local names behind the placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNames {
    pub prefix: String,
    /// The fleet's metrics namespace (`${Namespace}`).
    pub namespace: String,
    pub region: String,
    pub table: String,
    pub jobs_queue: String,
    pub jobs_dlq: String,
    pub deliveries_queue: String,
    pub deliveries_dlq: String,
    pub dispatcher_dlq: String,
}

impl LocalNames {
    pub fn new(names: &Names, namespace: &str, region: &str) -> Self {
        Self {
            prefix: names.prefix.clone(),
            namespace: namespace.to_owned(),
            region: region.to_owned(),
            table: names.table.clone(),
            jobs_queue: names.queue.clone(),
            jobs_dlq: names.jobs_dlq.clone(),
            deliveries_queue: names.deliveries.clone(),
            deliveries_dlq: names.deliveries_dlq.clone(),
            dispatcher_dlq: names.dispatcher_dlq.clone(),
        }
    }

    /// A function's name (`FunctionName` dimension): `{prefix}-ingest`, as serverless names it
    /// `{service}-{stage}-ingest`.
    pub fn function(&self, function: Function) -> String {
        format!("{}-{}", self.prefix, function.key())
    }

    /// The HTTP API's id (`ApiId` dimension).
    pub fn api_id(&self) -> String {
        format!("{}-api", self.prefix)
    }

    /// `text` with every placeholder the definitions use filled in.
    pub fn substitute(&self, text: &str) -> String {
        let mut pairs = vec![
            ("${Namespace}".to_owned(), self.namespace.clone()),
            ("${AWS::Region}".to_owned(), self.region.clone()),
            ("${HttpApi}".to_owned(), self.api_id()),
            ("${TasksTable}".to_owned(), self.table.clone()),
            ("${JobsQueue.QueueName}".to_owned(), self.jobs_queue.clone()),
            ("${JobsDlq.QueueName}".to_owned(), self.jobs_dlq.clone()),
            ("${DeliveriesQueue.QueueName}".to_owned(), self.deliveries_queue.clone()),
            ("${DeliveriesDlq.QueueName}".to_owned(), self.deliveries_dlq.clone()),
            ("${DispatcherDlq.QueueName}".to_owned(), self.dispatcher_dlq.clone()),
        ];
        pairs.extend(Function::ALL.iter().map(|f| (format!("${{{}}}", f.logical_id()), self.function(*f))));
        pairs.iter().fold(text.to_owned(), |text, (placeholder, name)| text.replace(placeholder, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::{ALARMS, DEFINITION};

    #[test]
    fn every_placeholder_of_the_dashboard_and_the_alarms_has_a_local_name() {
        let names = LocalNames::new(&Names::with_prefix("taskfleet-dev"), "TaskFleet", "us-east-1");
        for (file, text) in [("deploy/dashboard.json", DEFINITION), ("deploy/alarms.json", ALARMS)] {
            let filled = names.substitute(text);
            assert!(
                !filled.contains("${"),
                "{file} keeps a placeholder: {}",
                &filled[filled.find("${").unwrap()..][..40]
            );
        }
        assert_eq!(Function::Ingest.logical_id(), "IngestLambdaFunction");
        assert_eq!(names.function(Function::Caller), "taskfleet-dev-caller");
        assert_eq!(names.substitute("${JobsDlq.QueueName}"), "taskfleet-dev-jobs-dlq");
    }
}
