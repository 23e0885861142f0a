'use strict';
// Turns deploy/dashboard.json and deploy/alarms.json into CloudFormation resources, for
// serverless.yml (`${file(deploy/cloudwatch.js):resources}`).
//
// Both files write metrics as CloudWatch dashboard rows: [namespace, name, dimName, dimValue, …,
// {stat, id, label}] or [{expression, id, label}]. Strings may hold `${Namespace}` (the fleet's
// metrics namespace, filled in here) and CloudFormation `Fn::Sub` references (`${AWS::Region}`,
// `${JobsQueue.QueueName}`, `${IngestLambdaFunction}`, …), filled in by CloudFormation. The same
// rows are read by the dashboard/metric-name test (tests/deploy.rs) and drawn by
// the local fleet at /_local/dashboard.

const fs = require('fs');
const path = require('path');

const DASHBOARD = path.join(__dirname, 'dashboard.json');
const ALARMS = path.join(__dirname, 'alarms.json');
const PERCENTILE = /^p\d+(\.\d+)?$/;

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** A string for CloudFormation: `Fn::Sub` when it references anything. */
function sub(value) {
  return typeof value === 'string' && value.includes('${') ? { 'Fn::Sub': value } : value;
}

/** One dashboard row as { namespace, name, dimensions, options } or { expression, options }. */
function parseRow(row) {
  const last = row[row.length - 1];
  const options = last !== null && typeof last === 'object' ? last : {};
  if (options.expression) return { expression: options.expression, options };
  const strings = options === last ? row.slice(0, -1) : row;
  const [namespace, name, ...pairs] = strings;
  const dimensions = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) dimensions.push({ Name: pairs[i], Value: sub(pairs[i + 1]) });
  return { namespace, name, dimensions, options };
}

function statistic(stat) {
  return PERCENTILE.test(stat) ? { ExtendedStatistic: stat } : { Statistic: stat };
}

async function threshold(value, resolveVariable) {
  if (value !== null && typeof value === 'object' && value.param) {
    return Number(await resolveVariable(`param:${value.param}`));
  }
  return Number(value);
}

/** The AWS::CloudWatch::Alarm properties of one alarms.json entry. */
async function alarmProperties(name, alarm, context) {
  const rows = alarm.metrics.map((row) => parseRow(JSON.parse(JSON.stringify(row).replaceAll('${Namespace}', context.namespace))));
  const common = {
    AlarmName: `${context.prefix}-${name.replace(/Alarm$/, '')}`,
    AlarmDescription: alarm.description,
    ComparisonOperator: alarm.comparison,
    Threshold: await threshold(alarm.threshold, context.resolveVariable),
    EvaluationPeriods: alarm.evaluationPeriods,
    DatapointsToAlarm: alarm.datapointsToAlarm,
    TreatMissingData: alarm.treatMissingData,
    AlarmActions: [{ Ref: 'AlarmTopic' }],
    OKActions: [{ Ref: 'AlarmTopic' }],
  };
  if (rows.length === 1 && !rows[0].expression) {
    const [row] = rows;
    return {
      ...common,
      Namespace: row.namespace,
      MetricName: row.name,
      ...(row.dimensions.length ? { Dimensions: row.dimensions } : {}),
      Period: alarm.period,
      ...statistic(row.options.stat),
    };
  }
  const last = rows.length - 1;
  return {
    ...common,
    Metrics: rows.map((row, index) =>
      row.expression
        ? { Id: row.options.id, Expression: row.expression, Label: row.options.label, ReturnData: index === last }
        : {
            Id: row.options.id,
            ReturnData: index === last,
            MetricStat: {
              Metric: {
                Namespace: row.namespace,
                MetricName: row.name,
                ...(row.dimensions.length ? { Dimensions: row.dimensions } : {}),
              },
              Period: alarm.period,
              Stat: row.options.stat,
            },
          },
    ),
  };
}

/** The dashboard body: namespace filled in, alarm annotations and the alarm widget wired. */
function dashboardBody(dashboard, alarms, thresholds, namespace) {
  const body = JSON.parse(JSON.stringify(dashboard).replaceAll('${Namespace}', namespace));
  for (const widget of body.widgets) {
    const properties = widget.properties || {};
    for (const line of (properties.annotations && properties.annotations.horizontal) || []) {
      if (line.alarm) {
        if (!(line.alarm in thresholds)) throw new Error(`dashboard annotation names unknown alarm ${line.alarm}`);
        line.value = thresholds[line.alarm];
        delete line.alarm;
      }
    }
    if (widget.type === 'alarm') properties.alarms = Object.keys(alarms).map((name) => `\${${name}.Arn}`);
  }
  return JSON.stringify(body);
}

async function resources({ resolveVariable }) {
  const namespace = String(await resolveVariable('param:metricsNamespace'));
  const service = await resolveVariable('self:service');
  const stage = await resolveVariable('sls:stage');
  const context = { namespace, prefix: `${service}-${stage}`, resolveVariable };
  const dashboard = readJson(DASHBOARD);
  const alarms = readJson(ALARMS);

  const Resources = {};
  const thresholds = {};
  for (const [name, alarm] of Object.entries(alarms)) {
    const properties = await alarmProperties(name, alarm, context);
    thresholds[name] = properties.Threshold;
    Resources[name] = { Type: 'AWS::CloudWatch::Alarm', Properties: properties };
  }
  const email = String(await resolveVariable('param:alarmEmail'));
  if (email) {
    Resources.AlarmEmailSubscription = {
      Type: 'AWS::SNS::Subscription',
      Properties: { TopicArn: { Ref: 'AlarmTopic' }, Protocol: 'email', Endpoint: email },
    };
  }
  Resources.Dashboard = {
    Type: 'AWS::CloudWatch::Dashboard',
    Properties: {
      DashboardName: context.prefix,
      DashboardBody: { 'Fn::Sub': dashboardBody(dashboard, alarms, thresholds, namespace) },
    },
  };
  return {
    Resources,
    Outputs: {
      DashboardUrl: {
        Value: {
          'Fn::Sub': 'https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}#dashboards:name=${Dashboard}',
        },
      },
    },
  };
}

module.exports = { resources, parseRow };
