'use strict';
// Safe deploys (README, "Safe deploys and rolling back"): every function is invoked through its
// alias `live`, never `$LATEST`; a deploy publishes a new version and CloudFormation moves the
// alias to it through CodeDeploy, gradually, and CodeDeploy moves it back when a rollback alarm
// fires (or the deployment fails or is stopped). A local plugin of serverless.yml, run by
// `serverless package`; no network, nothing from outside the repository.
//
//  - Before the functions are compiled, each gets `targetAlias` = live: osls's own mechanism
//    (the one behind `provisionedConcurrency` and SnapStart), which then points every trigger at
//    `<function ARN>:live` and makes it wait for the alias: the HTTP API integrations and their
//    invoke permissions, the stream and queue event source mappings, the schedules' targets and
//    permissions, and the async invoke settings (EventInvokeConfig `Qualifier`).
//  - Once the resources are merged, it adds for each function the alias itself, on the version
//    osls publishes for this package (its logical id carries the code's and the configuration's
//    hash, so any change publishes a new one), with an UpdatePolicy CodeDeployLambdaAliasUpdate,
//    and a CodeDeploy deployment group: the function's deployment configuration
//    (custom.safeDeploys.deployments), the rollback alarms (custom.safeDeploys.rollbackAlarms, from
//    deploy/alarms.json), automatic rollback on failure, alarm and stop.
//
// The CodeDeploy application and its service role are written out in deploy/resources/deploys.yml.
// Packaging fails if a function has no deployment configuration, names an unknown one, or a
// rollback alarm is not in the template: a new function cannot slip through on $LATEST.

/** The deployment configurations CodeDeploy predefines for Lambda (CodeDeployDefault.Lambda…). */
const CONFIGS = new Set([
  'AllAtOnce',
  'Canary10Percent5Minutes',
  'Canary10Percent10Minutes',
  'Canary10Percent15Minutes',
  'Canary10Percent30Minutes',
  'Linear10PercentEvery1Minute',
  'Linear10PercentEvery2Minutes',
  'Linear10PercentEvery3Minutes',
  'Linear10PercentEvery10Minutes',
]);

const APPLICATION = 'CodeDeployApplication';
const ROLE = 'CodeDeployRole';

class SafeDeploys {
  constructor(serverless) {
    this.serverless = serverless;
    this.provider = serverless.getProvider('aws');
    this.hooks = {
      'before:package:compileFunctions': () => this.targetAliases(),
      'after:aws:package:finalize:mergeCustomProviderResources': () => this.aliases(),
    };
  }

  error(message) {
    return new this.serverless.classes.Error(`safe deploys: ${message}`);
  }

  settings() {
    const settings = (this.serverless.service.custom || {}).safeDeploys;
    if (!settings || !settings.alias || !settings.deployments || !Array.isArray(settings.rollbackAlarms)) {
      throw this.error('custom.safeDeploys needs alias, deployments and rollbackAlarms');
    }
    return settings;
  }

  targetAliases() {
    const { alias } = this.settings();
    const { naming } = this.provider;
    for (const name of this.serverless.service.getAllFunctions()) {
      const fn = this.serverless.service.getFunction(name);
      if (fn.provisionedConcurrency || fn.snapStart || fn.durableConfig) {
        throw this.error(`${name}: provisionedConcurrency, snapStart and durableConfig bring an alias of their own`);
      }
      fn.targetAlias = { name: alias, logicalId: `${naming.getNormalizedFunctionName(name)}LambdaAlias` };
    }
  }

  aliases() {
    const settings = this.settings();
    const template = this.serverless.service.provider.compiledCloudFormationTemplate;
    const resources = template.Resources;
    for (const required of [APPLICATION, ROLE]) {
      if (!resources[required]) throw this.error(`no ${required} in the template (deploy/resources/deploys.yml)`);
    }
    for (const alarm of settings.rollbackAlarms) {
      if (!resources[alarm] || resources[alarm].Type !== 'AWS::CloudWatch::Alarm') {
        throw this.error(`rollback alarm ${alarm} is not an alarm of the template (deploy/alarms.json)`);
      }
    }
    const rollbackOnAlarms = String(settings.rollbackOnAlarms) !== 'false';
    const { naming } = this.provider;
    for (const name of this.serverless.service.getAllFunctions()) {
      const config = settings.deployments[name];
      if (!CONFIGS.has(config)) {
        throw this.error(`${name}: deployment configuration ${config} is not one of ${[...CONFIGS].join(', ')}`);
      }
      const fn = this.serverless.service.getFunction(name);
      const functionId = naming.getLambdaLogicalId(name);
      const versions = Object.keys(resources).filter(
        (id) => resources[id].Type === 'AWS::Lambda::Version' && (resources[id].Properties.FunctionName || {}).Ref === functionId,
      );
      if (versions.length !== 1) throw this.error(`${name}: one published version expected, found ${versions.length}`);
      const groupId = `${naming.getNormalizedFunctionName(name)}DeploymentGroup`;
      resources[groupId] = {
        Type: 'AWS::CodeDeploy::DeploymentGroup',
        Properties: {
          ApplicationName: { Ref: APPLICATION },
          DeploymentGroupName: name,
          ServiceRoleArn: { 'Fn::GetAtt': [ROLE, 'Arn'] },
          DeploymentConfigName: `CodeDeployDefault.Lambda${config}`,
          DeploymentStyle: { DeploymentType: 'BLUE_GREEN', DeploymentOption: 'WITH_TRAFFIC_CONTROL' },
          AlarmConfiguration: {
            Enabled: rollbackOnAlarms,
            Alarms: settings.rollbackAlarms.map((alarm) => ({ Name: { Ref: alarm } })),
          },
          AutoRollbackConfiguration: {
            Enabled: true,
            Events: ['DEPLOYMENT_FAILURE', 'DEPLOYMENT_STOP_ON_ALARM', 'DEPLOYMENT_STOP_ON_REQUEST'],
          },
        },
      };
      resources[fn.targetAlias.logicalId] = {
        Type: 'AWS::Lambda::Alias',
        DependsOn: [groupId],
        Properties: {
          FunctionName: { Ref: functionId },
          FunctionVersion: { 'Fn::GetAtt': [versions[0], 'Version'] },
          Name: settings.alias,
          Description: `What every trigger of ${name} invokes; moved by CodeDeploy (${config})`,
        },
        UpdatePolicy: {
          CodeDeployLambdaAliasUpdate: {
            ApplicationName: { Ref: APPLICATION },
            DeploymentGroupName: { Ref: groupId },
          },
        },
      };
    }
  }
}

module.exports = SafeDeploys;
