// Opens a page in Debian's headless Chromium and prints what it showed, as JSON: the final URL, the status, the
// title, the first heading's text and the console errors. A screenshot is saved.
//
//   node page.mjs URL SCREENSHOT [--resolve HOST=IP]... [--home DIR]
//
// --home names a directory whose .pki/nssdb holds the certificate authorities Chromium trusts (made with
// certutil); without it, only the system's are trusted.
import { chromium } from 'playwright-core';

const argv = process.argv.slice(2);
const [url, screenshot] = argv;
const resolve = [];
let home = process.env.HOME;
for (let i = 2; i < argv.length; i += 2) {
  if (argv[i] === '--resolve') resolve.push(argv[i + 1]);
  else if (argv[i] === '--home') home = argv[i + 1];
  else throw new Error(`unknown argument ${argv[i]}`);
}

const args = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
if (resolve.length > 0) {
  args.push(`--host-resolver-rules=${resolve.map((r) => `MAP ${r.replace('=', ' ')}`).join(', ')}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args,
  env: { ...process.env, HOME: home },
  timeout: 30_000,
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  const response = await page.goto(url, { timeout: 20_000, waitUntil: 'load' });
  const heading = await page.locator('h1').first().textContent({ timeout: 5_000 });
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({
    url: page.url(),
    status: response ? response.status() : null,
    title: await page.title(),
    heading,
    errors,
  }));
} finally {
  await browser.close();
}
