// The local dashboard in a real browser: Debian's headless chromium, driven by playwright-core,
// loads /_local/dashboard of a running local fleet that has tasks in flight, and checks that the
// dashboard's widgets are drawn, that the fleet's own charts and AWS's metrics (which the local
// fleet publishes) have datapoints, and that the alarm widget shows every alarm's state. Then a
// drill: the example service refuses every job, and the page shows ExternalErrorRateAlarm in
// ALARM (screenshot: the dashboard under a failure, as in the README), until it recovers.
//
// Run by scripts/check-dashboard.sh, which starts the fleet (alarm periods of a few seconds) and
// sets:
//   TASKFLEET_URL         the local API (http://127.0.0.1:PORT)
//   TASKFLEET_DEV_KEY     a client key of the local fleet
//   EXAMPLE_SERVICE_URL   the example external service (http://127.0.0.1:PORT), for /_chaos
//   SCREENSHOT            where to save the screenshot of the calm dashboard (PNG)
//   ALARM_SCREENSHOT      where to save the screenshot under the failure (PNG)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { chromium } from "playwright-core";

const BASE = process.env.TASKFLEET_URL;
const KEY = process.env.TASKFLEET_DEV_KEY;
const SCREENSHOT = process.env.SCREENSHOT || "target/dashboard.png";
const ALARM_SCREENSHOT = process.env.ALARM_SCREENSHOT || "target/dashboard-alarm.png";
const SERVICE = process.env.EXAMPLE_SERVICE_URL;
const ALARM = "ExternalErrorRateAlarm";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Flags that keep chromium off the network and quiet on a machine without one.
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const definition = JSON.parse(readFileSync(new URL("../../deploy/dashboard.json", import.meta.url)));
const alarmDefinitions = JSON.parse(readFileSync(new URL("../../deploy/alarms.json", import.meta.url)));

async function submit(payload, webhook_url) {
  const answer = await fetch(`${BASE}/tasks`, {
    method: "POST",
    headers: { "x-api-key": KEY, "content-type": "application/json" },
    body: JSON.stringify(webhook_url ? { payload, webhook_url } : { payload }),
  });
  assert.equal(answer.status, 202, await answer.text());
}

/** A completion-webhook receiver on 127.0.0.1 (make dev allows loopback receivers) that answers
 *  204, after the client's webhook secret is created (POST /webhook-secret); its URL. */
async function webhookReceiver() {
  const answer = await fetch(`${BASE}/webhook-secret`, { method: "POST", headers: { "x-api-key": KEY } });
  assert.equal(answer.status, 200, await answer.text());
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => { response.statusCode = 204; response.end(); });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  return `http://127.0.0.1:${server.address().port}/hook`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Changes how the example service misbehaves (POST /_chaos). */
async function chaos(change) {
  const answer = await fetch(`${SERVICE}/_chaos`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(change) });
  assert.equal(answer.status, 200, await answer.text());
}

/** { alarm name: state } as the alarm widget shows it. */
async function alarmStates(page) {
  return page.$$eval("li.alarm", (items) => Object.fromEntries(items.map((i) => [i.dataset.name, i.dataset.state])));
}

async function reload(page) {
  await page.reload();
  await page.waitForSelector("body[data-loaded=true]", { timeout: 30_000 });
}

/** { widget title: { series label: points drawn } }, read from the page's DOM. */
async function drawn(page) {
  return page.$$eval("section.widget", (widgets) =>
    Object.fromEntries(widgets.map((w) => [w.dataset.title, Object.fromEntries(
      [...w.querySelectorAll("path.series")].map((p) => [p.dataset.label, Number(p.dataset.points)]))])));
}

/** What is still missing from the picture: lines (3+ points) in the fleet's charts, and both
 *  outcomes and their latency among the per-event metrics. */
function missing(points) {
  const lines = ["Active tasks by status", "Oldest RECEIVED task (seconds)", "Tasks per minute",
    "External service calls and errors", "End-to-end latency (ms, creation to DONE/FAILED)"];
  const gaps = lines.filter((title) => !Object.values(points[title] || {}).some((n) => n >= 3))
    .map((title) => `a line in "${title}"`);
  for (const label of ["completed (DONE)", "failed"]) {
    if (!(points["Tasks per minute"] || {})[label]) gaps.push(`"${label}" in "Tasks per minute"`);
  }
  if (!(points["Completion webhooks per minute"] || {})["delivered"]) {
    gaps.push(`"delivered" in "Completion webhooks per minute"`);
  }
  return gaps;
}

test("the local dashboard draws the deployed dashboard's widgets with data and the alarms' states", { timeout: 360_000 }, async () => {
  assert.ok(BASE && KEY && SERVICE, "TASKFLEET_URL, TASKFLEET_DEV_KEY and EXAMPLE_SERVICE_URL must be set (scripts/check-dashboard.sh)");
  // Tasks in flight: some finish, some fail, some are still waiting for their callback; some
  // have a completion webhook.
  const hook = await webhookReceiver();
  for (let n = 0; n < 12; n++) await submit(n % 4 === 3 ? { fail: "no capacity" } : { n }, n % 3 === 0 ? hook : undefined);

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1400 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`${BASE}/_local/dashboard?minutes=2&period=2`);
    await page.waitForSelector("body[data-loaded=true]", { timeout: 30_000 });

    const titles = await page.$$eval("section.widget", (ws) => ws.map((w) => w.dataset.title));
    assert.deepEqual(titles, definition.widgets.map((w) => w.properties.title));

    // The cron's gauges and the per-event metrics reach the emulator within a few schedule
    // ticks; keep work flowing and reload until every chart has a line.
    let points = {};
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      points = await drawn(page);
      if (!missing(points).length) break;
      await submit({ more: true }, hook);
      await submit({ fail: "still no capacity" });
      await sleep(2_000);
      await reload(page);
    }
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.deepEqual(missing(points), [], `drawn so far: ${JSON.stringify(points)}`);

    // AWS's own metrics (Lambda, API Gateway, SQS, DynamoDB), published by the local fleet: every
    // widget draws a line.
    const empty = Object.entries(points).filter(([title, lines]) => title !== "Alarms" && !Object.keys(lines).length);
    assert.deepEqual(empty, [], `widgets without a line: ${JSON.stringify(points)}`);
    for (const [title, label] of [["Lambda errors", "ingest"], ["HTTP API requests and errors", "requests"],
      ["Lambda duration p99 (ms)", "caller"], ["Dispatcher stream iterator age (ms)", "dispatcher iterator age"]]) {
      assert.ok(points[title][label], `"${label}" in "${title}": ${JSON.stringify(points[title])}`);
    }
    // The alarm widget: every alarm of deploy/alarms.json, with its state.
    let states = await alarmStates(page);
    assert.deepEqual(Object.keys(states).sort(), Object.keys(alarmDefinitions).sort());
    for (const state of Object.values(states)) assert.match(state, /^(OK|ALARM|INSUFFICIENT_DATA)$/);

    // The drill: the external service refuses every job; the external error rate alarm fires
    // within a few (shortened) periods, and the page shows it.
    await chaos({ refuse: 1 });
    try {
      const until = Date.now() + 150_000;
      while (Date.now() < until) {
        states = await alarmStates(page);
        if (states[ALARM] === "ALARM") break;
        await submit({ during: "outage" });
        await sleep(2_000);
        await reload(page);
      }
      assert.equal(states[ALARM], "ALARM", `alarm states: ${JSON.stringify(states)}`);
      assert.match(await page.$eval("#firing", (f) => f.textContent), new RegExp(ALARM));
      await page.screenshot({ path: ALARM_SCREENSHOT, fullPage: true });
    } finally {
      await chaos({ refuse: 0 });
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
