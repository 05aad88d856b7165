// Drives the dashboard of a running demo market in headless Chromium.
// Usage: node dashboard.mjs <base url> <client key> <machine id> <screenshot path>
// Checks: the page shows the demo's machines; a bid placed through the API appears in the
// machine's order book with its score; the switch to it becomes visible; writes a
// screenshot. Exits non-zero with the reason on the first failed check.
import { chromium } from 'playwright-core';

const [base, clientKey, machineId, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

function fail(message) {
  console.error(`dashboard test failed: ${message}`);
  process.exit(1);
}

async function api(method, path, key, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) fail(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}/dashboard/`);

  // The demo's machines are listed.
  const machines = await api('GET', '/api/v1/machines', clientKey);
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-machine-id]').length === n,
    machines.length,
    { timeout: 15000 },
  ).catch(() => fail(`expected ${machines.length} machines on the page`));
  for (const m of machines) {
    if (await page.locator(`[data-machine-id="${m.id}"]`).count() !== 1) {
      fail(`machine ${m.id} is not shown`);
    }
  }

  // A bid placed through the API appears in the order book with its score.
  await page.locator(`[data-machine-id="${machineId}"]`).first().click();
  const gpus = machines.find((m) => String(m.id) === machineId).gpus;
  const bid = await api('POST', '/api/v1/bids', clientKey, {
    machine: Number(machineId),
    price: 4000,
    image: 'registry.example/browser-test:1',
    oc: gpus.map((g) => ({ pl: g.card_min_w })),
  });
  const row = page.locator(`#order-book [data-bid-id="${bid.id}"]`);
  await row.waitFor({ timeout: 15000 }).catch(() => fail(`bid ${bid.id} is not in the order book`));
  // Scored at the next clearing (the demo clears every 10 s).
  await page.waitForFunction(
    (id) => {
      const cell = document.querySelector(`#order-book [data-bid-id="${id}"] .score`);
      return cell && cell.textContent.trim() !== '';
    },
    bid.id,
    { timeout: 30000 },
  ).catch(() => fail(`bid ${bid.id} shows no score`));

  // It outbids everyone: the switch shows as the machine's current bid and in the history.
  await page.waitForFunction(
    ([machine, id]) => {
      const current = document.querySelector(`[data-machine-id="${machine}"] .current-bid`);
      const history = document.querySelector('#switch-history');
      return current && current.textContent.includes(String(id))
        && history && history.textContent.includes(`bid ${id}`);
    },
    [machineId, bid.id],
    { timeout: 30000 },
  ).catch(() => fail(`the switch to bid ${bid.id} is not visible`));
  const status = await row.getAttribute('data-status');
  if (status !== 'winner') fail(`bid ${bid.id} has status ${status}, expected winner`);

  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length) fail(`script errors on the page: ${errors.join('; ')}`);
  console.log(`dashboard test passed: bid ${bid.id} won machine ${machineId}; screenshot ${screenshot}`);
} finally {
  await browser.close();
}
