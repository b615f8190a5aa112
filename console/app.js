// The console: signs in, then routes #/… to the pages of functions and load balancers.
import { resume, session, setRegion, signIn, signOut } from './api.js';
import { field, h, notice, show } from './ui.js';
import * as functions from './functions.js';
import * as balancers from './balancers.js';

const REGIONS = ['ap-guangzhou', 'ap-shanghai', 'ap-beijing', 'ap-chengdu', 'ap-chongqing', 'ap-nanjing',
  'ap-hongkong', 'ap-singapore', 'ap-tokyo', 'na-siliconvalley', 'eu-frankfurt'];

const view = document.getElementById('view');

function signInPage() {
  const note = notice();
  const id = h('input', { name: 'SecretId', autocomplete: 'username', required: true });
  const key = h('input', { name: 'SecretKey', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        await signIn(id.value.trim(), key.value.trim());
        key.value = '';
        chrome();
        if (!location.hash || location.hash === '#/sign-in') location.hash = '#/functions';
        else route();
      } catch (error) {
        note.error(error);
      } finally {
        button.disabled = false;
      }
    },
  }, field('SecretId', id), field('SecretKey', key, 'From credentials.json in fnlb\'s data directory.'), button, note);
  show(view, h('div', { class: 'sign-in panel' }, h('h1', {}, 'Sign in to fnlb'), form));
  id.focus();
}

/** The header's navigation and account, shown once signed in. */
function chrome() {
  const signedIn = Boolean(session.current);
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('account').hidden = !signedIn;
  if (signedIn) document.getElementById('uin').textContent = `Account ${session.current.Uin}`;
}

const ROUTES = [
  [/^#\/functions\/?$/, () => functions.list(view)],
  [/^#\/functions\/new$/, () => functions.create(view)],
  [/^#\/functions\/([^/]+)\/([^/]+)(?:\/([a-z]+))?$/, (m) => functions.detail(view, decodeURIComponent(m[1]), decodeURIComponent(m[2]), m[3] || 'code')],
  [/^#\/balancers\/?$/, () => balancers.list(view)],
  [/^#\/balancers\/([^/]+)$/, (m) => balancers.detail(view, decodeURIComponent(m[1]))],
];

async function route() {
  if (!session.current) return signInPage();
  const hash = location.hash || '#/functions';
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('current', hash.startsWith(`#/${link.dataset.section}`));
  }
  for (const [pattern, page] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      show(view, h('p', { class: 'loading' }, 'Loading…'));
      try {
        await page(match);
      } catch (error) {
        const note = notice();
        note.error(error);
        show(view, h('h1', {}, 'Something went wrong'), note);
      }
      return;
    }
  }
  location.hash = '#/functions';
}

async function start() {
  const region = document.getElementById('region');
  for (const r of REGIONS) region.append(h('option', { value: r, selected: r === session.region }, r));
  region.addEventListener('change', () => { setRegion(region.value); route(); });
  document.getElementById('sign-out').addEventListener('click', async () => {
    await signOut();
    chrome();
    location.hash = '#/sign-in';
    signInPage();
  });
  window.addEventListener('hashchange', route);
  window.addEventListener('fnlb:signed-out', () => { chrome(); signInPage(); });
  await resume();
  chrome();
  route();
}

start();
