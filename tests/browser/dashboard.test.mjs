// The local dashboard in a real browser: Debian's headless chromium, driven by playwright-core,
// loads /_local/dashboard of a running local fleet that has tasks in flight, and checks that the
// dashboard's widgets are drawn and that the fleet's own charts have datapoints.
//
// Run by scripts/check-dashboard.sh, which starts the fleet and sets:
//   TASKFLEET_URL       the local API (http://127.0.0.1:PORT)
//   TASKFLEET_DEV_KEY   a client key of the local fleet
//   SCREENSHOT          where to save the screenshot (PNG)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.TASKFLEET_URL;
const KEY = process.env.TASKFLEET_DEV_KEY;
const SCREENSHOT = process.env.SCREENSHOT || "target/dashboard.png";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Flags that keep chromium off the network and quiet on a machine without one.
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const definition = JSON.parse(readFileSync(new URL("../../deploy/dashboard.json", import.meta.url)));

async function submit(payload) {
  const answer = await fetch(`${BASE}/tasks`, {
    method: "POST",
    headers: { "x-api-key": KEY, "content-type": "application/json" },
    body: JSON.stringify({ payload }),
  });
  assert.equal(answer.status, 202, await answer.text());
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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
  return gaps;
}

test("the local dashboard draws the deployed dashboard's widgets with data", { timeout: 180_000 }, async () => {
  assert.ok(BASE && KEY, "TASKFLEET_URL and TASKFLEET_DEV_KEY must be set (scripts/check-dashboard.sh)");
  // Tasks in flight: some finish, some fail, some are still waiting for their callback.
  for (let n = 0; n < 12; n++) await submit(n % 4 === 3 ? { fail: "no capacity" } : { n });

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1400 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`${BASE}/_local/dashboard?minutes=5&period=2`);
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
      await submit({ more: true });
      await submit({ fail: "still no capacity" });
      await sleep(2_000);
      await page.reload();
      await page.waitForSelector("body[data-loaded=true]", { timeout: 30_000 });
    }
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.deepEqual(missing(points), [], `drawn so far: ${JSON.stringify(points)}`);

    // Widgets of AWS's own metrics say why they are empty instead of drawing nothing silently.
    const lambda = await page.$eval('section.widget[data-title="Lambda errors"] .legend', (l) => l.textContent);
    assert.match(lambda, /produced by AWS/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
