// Drives the dashboard of a running demo market in headless Chromium.
// Usage: node dashboard.mjs <base url> <client key> <machine id> <screenshot path> <operator key>
//        <order client key>
// Checks: the page shows the demo's machines; the machine panel shows the background job
// (image, power limit per GPU), what sets the minimum bid and the machine's activity; a bid
// placed through the API appears in the machine's order book with its score; the switch to
// it becomes visible; signed in with the client's key it shows the balance and the bid;
// signed in as the demo's order client it shows its standing order (id, state, machines
// held of those asked) and marks the order's bids in the bid list; signed in as the
// operator it lists the plugin versions. Writes a screenshot. Exits
// non-zero with the reason on the first failed check.
import { chromium } from 'playwright-core';

const [base, clientKey, machineId, screenshot, operatorKey, orderKey] = process.argv.slice(2);
if (!orderKey) fail('usage: node dashboard.mjs <base> <client key> <machine> <screenshot> <operator key> <order client key>');
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
  const machine = machines.find((m) => String(m.id) === machineId);
  const gpus = machine.gpus;

  // The machine panel shows the host's background job (image, power limit per GPU), what
  // sets the minimum bid and what the machine does now.
  const job = machine.background_job;
  if (!job) fail(`machine ${machineId} has no background job: ${JSON.stringify(machine)}`);
  await page.waitForFunction(
    ([id, image]) => document.querySelector('#machine-title')?.textContent === `Machine #${id}`
      && document.querySelector('#background-image')?.textContent === image,
    [machineId, job.image],
    { timeout: 10000 },
  ).catch(async () => fail(`the background job's image ${job.image} is not shown: ${await page.textContent('#machine-body')}`));
  const limits = await page.$$eval('#gpus tbody .background-oc', (cells) => cells.map((c) => [c.dataset.powerLimitW, c.textContent]));
  if (limits.length !== job.oc.length) fail(`${limits.length} GPU rows show a background power limit, expected ${job.oc.length}`);
  job.oc.forEach((o, i) => {
    const [w, text] = limits[i];
    if (w !== String(o.power_limit_w) || !text.includes(`${o.power_limit_w} W`)) {
      fail(`GPU ${i}: background power limit ${JSON.stringify(limits[i])}, expected ${o.power_limit_w} W`);
    }
  });
  const minBidFrom = await page.locator('#min-bid-from').first();
  const from = await minBidFrom.getAttribute('data-min-bid-from');
  const fromText = (await minBidFrom.textContent()).trim();
  if (from !== machine.min_bid_from || fromText !== machine.min_bid_from.replace(/_/g, ' ')) {
    fail(`min bid set by ${from} (${fromText}), expected ${machine.min_bid_from}`);
  }
  const activity = await page.getAttribute('#machine-activity', 'data-activity');
  if (!['bid', 'background', 'idle'].includes(activity)) fail(`the machine's activity is ${activity}`);
  if (await page.locator('#background-status').count() !== 1) fail("the agent's background status is not shown");
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
  ).catch(async () => {
    const book = await api('GET', `/api/v1/machines/${machineId}/book`, clientKey);
    fail(`bid ${bid.id} shows no score; the order book: ${JSON.stringify(book)}`);
  });

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
  // The bids it outbid are told what would have won (a price, or why none would: it
  // outbids them at up to 4000 CLORE/day).
  await page.waitForFunction(
    () => [...document.querySelectorAll('#order-book tr[data-status="scored"] .to-win')]
      .some((c) => c.textContent.trim() !== ''),
    null,
    // The searches run one at a time, shared with the standing order's quotes at each
    // boundary: on a loaded machine the answer can take several refreshes.
    { timeout: 60000 },
  ).catch(() => fail('no losing bid in the order book says what would have won'));
  // The clearing price per GPU model is charted.
  await page.locator('#chart-models svg path.line').first().waitFor({ timeout: 20000 })
    .catch(() => fail('the price chart per GPU model is empty'));

  // Signed in with the client's key: its balance and the bid.
  await page.fill('#api-key', clientKey);
  await page.click('#sign-in');
  await page.locator('#account').waitFor({ state: 'visible', timeout: 10000 })
    .catch(() => fail('the account panel does not open'));
  const { balance } = await api('GET', '/api/v1/balance', clientKey);
  await page.waitForFunction(
    (b) => document.querySelector('#balance')?.textContent.replace(/,/g, '').includes(String(Math.floor(b))),
    balance,
    { timeout: 10000 },
  ).catch(() => fail(`the balance ${balance} is not shown`));
  await page.locator(`#my-bids [data-bid="${bid.id}"]`).waitFor({ timeout: 10000 })
    .catch(() => fail(`bid ${bid.id} is not among the key's bids`));
  // A quote for the selected machine, signed in.
  await page.fill('#quote-pl', String(gpus[0].card_min_w));
  await page.fill('#quote-image', 'registry.example/browser-test:1');
  await page.click('#quote-form button[type=submit]');
  await page.waitForFunction(
    () => /CLORE\/day wins the next interval/.test(document.querySelector('#quote-result')?.textContent || ''),
    null,
    { timeout: 15000 },
  ).catch(async () => fail(`no quote: ${await page.textContent('#quote-result')}`));
  // A withdrawal requested in the signed-in panel shows as pending.
  await page.fill('#withdraw-amount', '1.5');
  await page.fill('#withdraw-destination', 'wallet-browser-test');
  await page.click('#withdraw-form button[type=submit]');
  const mine = async () => (await api('GET', '/api/v1/withdrawals', clientKey));
  let withdrawal = null;
  for (let i = 0; i < 50 && !withdrawal; i++) {
    withdrawal = (await mine()).find((w) => w.destination === 'wallet-browser-test');
    if (!withdrawal) await new Promise((r) => setTimeout(r, 200));
  }
  if (!withdrawal) fail(`the withdrawal form did not request a withdrawal: ${await page.textContent('#withdraw-message')}`);
  if (withdrawal.amount !== 1.5) fail(`withdrawal of ${withdrawal.amount}, expected 1.5`);
  await page.locator(`#withdrawals [data-withdrawal-row="${withdrawal.id}"]`).waitFor({ timeout: 10000 })
    .catch(() => fail(`withdrawal ${withdrawal.id} is not in the panel`));
  await page.screenshot({ path: screenshot, fullPage: true });

  // Signed in as the demo's order client: its standing order is listed with its id and
  // state, and the bids it placed are marked with it in the bid list.
  await page.click('#sign-out');
  await page.fill('#api-key', orderKey);
  await page.click('#sign-in');
  const orders = await api('GET', '/api/v1/orders', orderKey);
  if (orders.length !== 1) fail(`the order client has ${orders.length} standing orders, expected 1: ${JSON.stringify(orders)}`);
  const order = orders[0];
  await page.waitForFunction(
    ([id, count]) => {
      const card = document.querySelector(`#orders .order[data-order="${id}"]`);
      const shown = card?.querySelector('.order-state')?.dataset.state;
      return card && card.textContent.includes(`Order #${id}`)
        && ['active', 'paused'].includes(shown) && card.textContent.includes(shown)
        && card.querySelector('.held')?.textContent.includes(`of ${count}`);
    },
    [order.id, order.count],
    { timeout: 15000 },
  ).catch(async () => fail(`standing order ${order.id} (${order.state}) is not shown: ${await page.textContent('#orders-section')}`));
  // The order bids from the boundary after the demo started; its bids carry its mark.
  let placed = order;
  for (let i = 0; i < 40 && placed.bids.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    placed = await api('GET', `/api/v1/orders/${order.id}`, orderKey);
  }
  if (placed.bids.length === 0) fail(`standing order ${order.id} placed no bid in 40 s: ${JSON.stringify(placed)}`);
  const marked = placed.bids[0];
  await page.waitForFunction(
    ([bid, id]) => {
      const row = document.querySelector(`#my-bids tr[data-bid="${bid}"]`);
      return row && row.dataset.order === String(id) && row.textContent.includes(`order #${id}`);
    },
    [marked, order.id],
    { timeout: 15000 },
  ).catch(async () => fail(`bid ${marked} is not marked with order #${order.id}: ${await page.textContent('#my-bids')}`));
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-orders.png'), fullPage: true });

  // Signed in as the operator: every stored plugin version is listed with its digest.
  await page.click('#sign-out');
  await page.fill('#api-key', operatorKey);
  await page.click('#sign-in');
  const plugins = await api('GET', '/api/v1/plugins', operatorKey);
  const digests = (plugins.versions ?? plugins).map((v) => v.digest);
  if (digests.length === 0) fail('the demo has no stored plugin versions');
  for (const digest of digests) {
    await page.locator(`#operator [data-digest="${digest}"]`).waitFor({ timeout: 10000 })
      .catch(() => fail(`plugin version ${digest} is not in the operator panel`));
  }
  // The operator pays the withdrawal from the panel (the reference is asked in a prompt).
  page.once('dialog', (d) => d.accept('tx-browser-test'));
  const pay = page.locator(`#withdrawals button[data-withdrawal="${withdrawal.id}"][data-outcome="paid"]`);
  await pay.waitFor({ timeout: 10000 }).catch(() => fail('the operator sees no pay button'));
  await pay.click();
  // Paid: the row's state badge says so and its action buttons are gone (the "mark paid"
  // button's own label must not count).
  await page.waitForFunction(
    (id) => {
      const row = document.querySelector(`#withdrawals [data-withdrawal-row="${id}"]`);
      return row && !row.querySelector('button[data-outcome]') && row.textContent.includes('paid');
    },
    withdrawal.id,
    { timeout: 10000 },
  ).catch(() => fail(`withdrawal ${withdrawal.id} does not show as paid`));
  const settled = (await mine()).find((w) => w.id === withdrawal.id);
  if (settled.state !== 'paid' || settled.reference !== 'tx-browser-test') fail(`withdrawal ${JSON.stringify(settled)}`);
  // The strategy lab: a stored strategy that is not active runs in shadow, is backtested
  // (revenue over time, live against it) and is promoted.
  const candidate = (plugins.versions ?? plugins).find((v) => v.kind === 'strategy' && v.role !== 'strategy');
  if (!candidate) fail('the demo stores no second strategy to try');
  const candidateRow = `#operator [data-digest="${candidate.digest}"]`;
  await page.click(`${candidateRow} button[data-action="shadow"]`);
  await page.locator('#shadow [data-shadow-interval]').first().waitFor({ timeout: 30000 })
    .catch(async () => fail(`no shadow interval shown: ${await page.textContent('#shadow-meta')}`));
  await page.click(`${candidateRow} button[data-action="backtest"]`);
  await page.locator('#chart-backtest svg path.line').first().waitFor({ timeout: 30000 })
    .catch(async () => fail(`no backtest chart: ${await page.textContent('#backtest-meta')}`));
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-lab.png'), fullPage: true });
  await page.click('#promote-shadow');
  await page.waitForFunction(
    (name) => (document.querySelector('#active-strategy')?.textContent || '').startsWith(name),
    candidate.name,
    { timeout: 15000 },
  ).catch(async () => fail(`promoting did not activate ${candidate.name}: ${await page.textContent('#active-strategy')}`));
  if (errors.length) fail(`script errors on the page: ${errors.join('; ')}`);
  console.log(`dashboard test passed: bid ${bid.id} won machine ${machineId}; screenshot ${screenshot}`);
} finally {
  await browser.close();
}
