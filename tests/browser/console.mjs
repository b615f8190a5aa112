// Walks the seed's directions through fnlb's web console in Debian's headless Chromium, as a user would: sign in
// (by keyboard), create the function with the seed's code, deploy, create a load balancer, an HTTP listener and a
// rule, bind the function, open Trigger Management and follow the access path. Also: a test invocation, the logs,
// the charts, a refused binding (a TCP listener) with the API's message, a phone-sized screen. Then what a new
// user trips over (`report.checks`, each recorded whether it passes or not, the walk going on): the sign-in page
// without navigation, refusals shown beside the form that caused them, certificate fields only for TLS listeners,
// each rule's access path, a test event with the header names of live events, log lines that wrap, and a trigger
// removed from its function's page. Prints a JSON report; saves a screenshot of each page.
//
//   node console.mjs BASE_URL SECRET_ID SECRET_KEY VIP PORT SCREENSHOT_DIR
//
// DOMAIN (www.example.test) resolves to VIP in this browser, so a rule of that domain can be followed.
import { chromium } from 'playwright-core';

const [base, secretId, secretKey, vip, port, shots] = process.argv.slice(2);
const DOMAIN = 'www.example.test';
const report = { steps: [], errors: [], loads: {}, checks: {} };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--host-resolver-rules=MAP ${DOMAIN} ${vip}`,
    '--disable-features=HttpsUpgrades'],
  timeout: 30_000,
});

/** A function that shows what it was given: the Host header and the header names, and a long log line. */
const SHOW_HEADERS = `import json


def main_handler(event, context):
    headers = event["headers"]
    print("event: " + json.dumps(event) + " " + "x" * 400)
    return {
        "isBase64Encoded": False,
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"host": headers["Host"], "names": sorted(headers)}),
    }
`;

/** Whether every <pre> and table on the page, and the page itself, fits its width (long lines wrap). */
const fitsWidth = () => [...document.querySelectorAll('pre, .table-wrap')].every((el) => el.scrollWidth <= el.clientWidth + 1)
  && document.documentElement.scrollWidth <= window.innerWidth + 1;

/** Where a refusal showed: its text, whether `form` holds it, and whether it is on screen. */
const refusalIn = (form) => {
  const note = form.querySelector('.notice.error');
  const box = note && note.getBoundingClientRect();
  return { text: note ? note.textContent : null, onScreen: Boolean(box && box.top >= 0 && box.bottom <= window.innerHeight) };
};
let n = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('console', (m) => { if (m.type() === 'error') report.errors.push(m.text()); });
  page.on('pageerror', (e) => report.errors.push(String(e)));
  // Confirmations (deploying from the editor, deletions) are accepted, as a user who means it would.
  page.on('dialog', (dialog) => dialog.accept());
  const shot = async (name) => {
    n += 1;
    await page.screenshot({ path: `${shots}/${String(n).padStart(2, '0')}-${name}.png`, fullPage: true });
    report.steps.push(name);
  };
  const visit = async (hash, ready) => {
    const started = Date.now();
    await page.goto(`${base}/console/${hash}`);
    await ready();
    report.loads[hash || 'sign-in'] = Date.now() - started;
  };
  // A check that fails is recorded as {failed: why} and the walk goes on, so one run reports every check.
  const check = async (name, step) => {
    try {
      report.checks[name] = await step();
    } catch (error) {
      report.checks[name] = { failed: String(error && error.message || error).split('\n')[0] };
    }
  };
  const chromeShown = async () => ({
    navigation: await page.getByRole('navigation', { name: 'Main' }).isVisible(),
    signOut: await page.getByRole('button', { name: 'Sign out' }).isVisible(),
    region: await page.locator('#region').isVisible(),
  });

  // Sign in with the keyboard alone. Before signing in there is nothing to navigate to or sign out of.
  await visit('', () => page.getByLabel('SecretId').waitFor());
  await check('signInChrome', chromeShown);
  await shot('sign-in');
  await page.keyboard.type(secretId); // the SecretId field has focus
  await page.keyboard.press('Tab');
  await page.keyboard.type(secretKey);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Functions' }).waitFor();
  await check('signedInChrome', chromeShown);
  await shot('functions-empty');

  // Create the function with the seed's code (the editor's template), and deploy it. A name the API refuses
  // first: its message shows beside the form, under the field it names, which takes the focus.
  await page.getByRole('link', { name: 'Create function' }).click();
  await page.getByLabel('Name', { exact: true }).fill('bad name');
  await page.getByRole('button', { name: 'Create and deploy' }).click();
  await check('badName', async () => {
    const form = page.locator('form', { has: page.getByRole('button', { name: 'Create and deploy' }) });
    await form.locator('.notice.error').waitFor({ timeout: 5_000 });
    const name = page.getByLabel('Name', { exact: true });
    return {
      text: (await form.evaluate(refusalIn)).text,
      invalid: await name.getAttribute('aria-invalid'),
      focused: await name.evaluate((el) => el === document.activeElement),
      // The message under the field, which describes it.
      ...await name.evaluate((el) => {
        const message = document.getElementById(el.getAttribute('aria-describedby') || '');
        const box = message && message.getBoundingClientRect();
        return {
          description: message ? message.textContent : null,
          inForm: Boolean(message && el.form.contains(message)),
          onScreen: Boolean(box && box.top >= 0 && box.bottom <= window.innerHeight),
        };
      }),
    };
  });
  await shot('create-function-refused');
  await page.getByLabel('Name', { exact: true }).fill('hello-clb');
  await page.getByLabel('Runtime').selectOption('Python3.6');
  await shot('create-function');
  await page.getByRole('button', { name: 'Create and deploy' }).click();
  await page.getByRole('heading', { name: 'hello-clb' }).waitFor();
  report.code = await page.getByLabel('Code of the entry file').inputValue();
  await shot('function-code');
  await page.getByRole('button', { name: 'Deploy' }).click();
  await page.getByText('Deployed: new requests run the new code.').waitFor();

  // A load balancer, an HTTP listener and a rule; bind the function.
  await page.getByRole('link', { name: 'Load balancers' }).click();
  await page.getByRole('heading', { name: 'Load balancers' }).waitFor();
  await page.getByLabel('Name').fill('seed-clb');
  await page.getByLabel('VIP').fill(vip);
  await page.getByRole('button', { name: 'Create load balancer' }).click();
  await page.getByRole('heading', { name: 'seed-clb' }).waitFor();
  // The certificate is asked for only by the protocols that terminate TLS.
  await check('certificateShown', async () => {
    const shown = {};
    for (const protocol of ['HTTP', 'HTTPS', 'TCP', 'UDP', 'TCP_SSL']) {
      await page.getByLabel('Protocol').selectOption(protocol);
      shown[protocol] = await page.getByLabel('Certificate (PEM)').isVisible();
      if (protocol === 'HTTPS') await shot('listener-https');
    }
    return shown;
  });
  await page.getByLabel('Protocol').selectOption('HTTP');
  await page.getByLabel('Port').fill(port);
  await page.getByRole('button', { name: 'Create listener' }).click();
  await page.getByRole('heading', { name: `HTTP:${port}` }).waitFor();
  await page.getByLabel('URL').fill('/');
  await page.getByRole('button', { name: 'Create rule' }).click();
  await page.getByRole('button', { name: 'Bind function' }).waitFor();
  // Each rule shows its access path, as its CLB trigger will.
  await check('ruleAccessPath', () => page.locator('a.rule-path').first().textContent({ timeout: 5_000 }));
  await shot('rule');
  await page.getByLabel('Function').selectOption('default/hello-clb');
  await page.getByRole('button', { name: 'Bind function' }).click();
  await page.getByRole('button', { name: 'Unbind' }).waitFor();
  await shot('bound');
  // The rule's requests over the last hour.
  await page.locator('summary', { hasText: 'Requests' }).first().click();
  await page.locator('.chart svg').first().waitFor();
  report.ruleChart = await page.locator('.chart svg').first().getAttribute('aria-label');
  await shot('rule-requests');

  // A TCP listener, for the refusal below. On the HTTP listener's port first: refused, beside the listener form.
  const tcpPort = String(Number(port) + 1);
  await page.getByLabel('Protocol').selectOption('TCP');
  await page.getByLabel('Port').fill(port);
  await page.getByRole('button', { name: 'Create listener' }).click();
  await check('listenerRefusal', async () => {
    const form = page.locator('form', { has: page.getByRole('button', { name: 'Create listener' }) });
    await form.locator('.notice.error').waitFor({ timeout: 5_000 });
    return form.evaluate(refusalIn);
  });
  await shot('listener-refused');
  await page.getByLabel('Port').fill(tcpPort);
  await page.getByRole('button', { name: 'Create listener' }).click();
  await page.getByRole('heading', { name: `TCP:${tcpPort}` }).waitFor();

  // Trigger Management: the access path, followed.
  await page.getByRole('link', { name: 'hello-clb' }).click();
  await page.getByRole('link', { name: 'Trigger Management' }).waitFor();
  await page.getByRole('link', { name: 'Trigger Management' }).click();
  const link = page.locator('a.access-path').first();
  await link.waitFor();
  report.accessPath = await link.getAttribute('href');
  await shot('trigger-management');
  // Refused: a function on a TCP listener. The API's message is shown.
  const tcp = await page.getByLabel('Listener').evaluate((select, prefix) =>
    [...select.options].find((o) => o.textContent.startsWith(prefix)).value, `TCP:${tcpPort}`);
  await page.getByLabel('Listener').selectOption(tcp);
  await page.getByRole('button', { name: 'Create CLB trigger' }).click();
  const refusal = page.locator('.notice.error');
  await refusal.waitFor();
  report.refusal = await refusal.textContent();
  await shot('refused');
  const site = await context.newPage();
  await site.goto(report.accessPath);
  report.accessHeading = await site.locator('h1').textContent();
  await site.screenshot({ path: `${shots}/${String(++n).padStart(2, '0')}-access-path.png` });
  await site.close();

  // Test with a CLB event; the logs; the charts.
  await page.getByRole('link', { name: 'Test', exact: true }).click();
  await page.getByRole('button', { name: 'Test' }).click();
  await page.getByRole('heading', { name: 'Succeeded' }).waitFor();
  report.testResult = await page.locator('pre.result').textContent();
  await shot('test');
  await page.getByRole('link', { name: 'Logs' }).click();
  await page.getByRole('columnheader', { name: 'Log' }).waitFor();
  report.log = await page.locator('td pre').first().textContent();
  await shot('logs');
  await page.getByRole('link', { name: 'Monitoring' }).click();
  await page.locator('.chart svg').first().waitFor();
  report.charts = await page.locator('.chart svg').count();
  report.chartLabels = await page.locator('.chart svg').evaluateAll((all) => all.map((s) => s.getAttribute('aria-label')));
  await shot('monitoring');

  // A function reading event["headers"]["Host"]: tested with the CLB template, then reached through a rule of
  // its own domain. Long log lines wrap. Its trigger is then removed from its page.
  await page.getByRole('link', { name: 'Functions' }).click();
  await page.getByRole('link', { name: 'Create function' }).click();
  await page.getByLabel('Name', { exact: true }).fill('show-headers');
  await page.getByLabel('Code of the entry file').fill(SHOW_HEADERS);
  await page.getByRole('button', { name: 'Create and deploy' }).click();
  await page.getByRole('heading', { name: 'show-headers' }).waitFor();
  await page.getByRole('link', { name: 'Test', exact: true }).click();
  await page.getByRole('button', { name: 'Test' }).waitFor();
  report.templateHeaders = Object.keys(JSON.parse(await page.getByLabel('Event').inputValue()).headers);
  await page.getByRole('button', { name: 'Test' }).click();
  await page.getByRole('heading', { name: /^(Succeeded|Failed)$/ }).waitFor();
  await check('templateTest', async () => ({
    outcome: await page.getByRole('heading', { name: /^(Succeeded|Failed)$/ }).textContent(),
    result: await page.locator('pre.result').textContent(),
  }));
  await check('testWraps', () => page.evaluate(fitsWidth));
  await shot('test-headers');
  await page.getByRole('link', { name: 'Trigger Management' }).click();
  const http = await page.getByLabel('Listener').evaluate((select, prefix) =>
    [...select.options].find((o) => o.textContent.startsWith(prefix)).value, `HTTP:${port} `);
  await page.getByLabel('Listener').selectOption(http);
  await page.getByLabel('Domain').fill(DOMAIN);
  await page.getByLabel('URL').fill('/headers');
  await page.getByRole('button', { name: 'Create CLB trigger' }).click();
  const path = `http://${DOMAIN}:${port}/headers`;
  await page.locator('a.access-path', { hasText: path }).waitFor();
  await shot('trigger-domain');
  const live = await context.newPage();
  report.liveEvent = await (await live.goto(path)).json();
  await live.close();
  // The load balancer's page shows the rule's access path as the trigger does.
  await page.getByRole('link', { name: /^lb-/ }).first().click();
  await page.getByRole('heading', { name: 'seed-clb' }).waitFor();
  await check('ruleAccessPaths', () => page.locator('a.rule-path').allTextContents());
  await shot('balancer-access-paths');
  await page.goto(`${base}/console/#/functions/default/show-headers/logs`);
  await page.getByRole('columnheader', { name: 'Log' }).waitFor();
  await check('logsWrap', async () => ({
    long: await page.locator('td pre', { hasText: 'x'.repeat(400) }).count(),
    fits: await page.evaluate(fitsWidth),
  }));
  await shot('logs-wrapped');
  // Removed from the function's page: gone from its triggers; its rule stays.
  await page.getByRole('link', { name: 'Trigger Management' }).click();
  await check('triggerRemoved', async () => {
    await page.getByRole('button', { name: `Remove trigger ${path}` }).click({ timeout: 5_000 });
    await page.getByText('No CLB trigger yet').waitFor({ timeout: 5_000 });
    return page.locator('.notice.ok').textContent();
  });
  await shot('trigger-removed');

  // Warm page loads, and a phone-sized screen.
  await visit('#/functions', () => page.getByRole('link', { name: 'hello-clb' }).waitFor());
  await visit('#/balancers', () => page.getByRole('link', { name: 'seed-clb' }).waitFor());
  await page.setViewportSize({ width: 375, height: 667 });
  await visit('#/functions', () => page.getByRole('link', { name: 'hello-clb' }).waitFor());
  report.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot('phone');
} catch (error) {
  report.failure = String(error && error.stack || error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
