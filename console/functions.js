// Functions: the list, creation with an in-page editor or an upload, and each function's page: code, test,
// versions and aliases, logs, triggers and monitoring.
import { all, clb, scf, session } from './api.js';
import { act, field, h, heading, notice, select, show, table, tabs } from './ui.js';
import { base64, folderFiles, zip } from './zip.js';
import { functionCharts } from './charts.js';

const RUNTIMES = ['Python3.9', 'Python3.10', 'Python3.7', 'Python3.6', 'Nodejs18.15', 'Nodejs16.13', 'Nodejs14.18',
  'Nodejs12.16', 'Nodejs10.15', 'CustomRuntime'];
/** The memory sizes SCF takes: 64 MB, and 128 MB to 3,072 MB in steps of 128. */
const MEMORY = [64, ...Array.from({ length: 24 }, (_, i) => 128 * (i + 1))];

/** The seed's code (served by fnlb, byte for byte examples/hello-clb/index.py), and its Node.js counterpart. */
const TEMPLATES = {
  python: '',
  node: `'use strict';
exports.main_handler = async (event, context) => {
  return {
    isBase64Encoded: false,
    statusCode: 200,
    headers: { 'Content-Type': 'text/html' },
    body: '<html><body><h1>Hello CLB</h1></body></html>',
  };
};
`,
};

/** The file a handler names: `index.main_handler` → index.py (Python) or index.js (Node.js). */
function entryFile(runtime, handler) {
  const module = (handler || 'index.main_handler').split('.')[0];
  return runtime.startsWith('Nodejs') ? `${module}.js` : `${module}.py`;
}

const functionHref = (ns, name, tab) => `#/functions/${encodeURIComponent(ns)}/${encodeURIComponent(name)}${tab ? `/${tab}` : ''}`;

async function namespaces() {
  const listed = await all('scf', 'ListNamespaces', {}, 'Namespaces');
  return listed.map((n) => n.Name);
}

let currentNamespace = 'default';

export async function list(view) {
  const names = await namespaces();
  if (!names.includes(currentNamespace)) currentNamespace = 'default';
  const functions = await all('scf', 'ListFunctions', { Namespace: currentNamespace }, 'Functions');
  const details = await Promise.all(functions.map((f) => scf('GetFunction', { FunctionName: f.FunctionName, Namespace: currentNamespace })));
  const picker = select('namespace', names.map((n) => [n, n]), currentNamespace);
  picker.addEventListener('change', () => { currentNamespace = picker.value; list(view); });
  show(view,
    heading('Functions', h('a', { class: 'btn', href: '#/functions/new' }, 'Create function')),
    h('div', { class: 'row' }, field('Namespace', picker)),
    table([
      ['Name', (f) => h('a', { href: functionHref(currentNamespace, f.FunctionName) }, f.FunctionName)],
      ['Status', (f) => h('span', { class: `status ${f.Status === 'Active' ? 'good' : 'bad'}` }, f.Status)],
      ['Runtime', (f) => f.Runtime],
      ['Memory', (f) => `${f.MemorySize} MB`],
      ['Timeout', (f) => `${f.Timeout} s`],
      ['Last modified', (f) => f.ModTime],
    ], details, 'No functions in this namespace yet.'));
}

/** The code inputs shared by creation and deployment: the editor, or a zip, or a folder. */
function codeInputs(runtime, handler, source) {
  const editor = h('textarea', { class: 'code', name: 'code', spellcheck: 'false', 'aria-label': 'Code of the entry file' });
  editor.value = source;
  editor.addEventListener('keydown', (event) => {
    // Tab indents inside the editor; Escape then Tab leaves it (keyboard users are never trapped).
    if (event.key === 'Tab' && !event.shiftKey && !editor.dataset.escaped) {
      event.preventDefault();
      editor.setRangeText('    ', editor.selectionStart, editor.selectionEnd, 'end');
    }
    editor.dataset.escaped = event.key === 'Escape' ? '1' : '';
  });
  const zipFile = h('input', { type: 'file', accept: '.zip,application/zip' });
  const folder = h('input', { type: 'file', webkitdirectory: true, multiple: true });
  const label = h('span', { class: 'muted' });
  const warning = h('p', { class: 'muted' }, 'Deploying from the editor makes this one file the whole package; a function of several files is deployed by uploading its zip or folder.');
  const update = () => { label.textContent = `Entry file: ${entryFile(runtime(), handler())} (Escape, then Tab, leaves the editor)`; };
  update();
  return {
    elements: [label, editor, warning, h('div', { class: 'row' }, field('Or upload a zip', zipFile), field('Or upload a folder', folder))],
    update,
    /** Whether a zip or a folder was picked. */
    uploaded: () => zipFile.files.length > 0 || folder.files.length > 0,
    /** The code package, base64, from the upload when one was picked, otherwise from the editor. */
    async package() {
      if (zipFile.files.length > 0) return base64(new Uint8Array(await zipFile.files[0].arrayBuffer()));
      if (folder.files.length > 0) return base64(zip(await folderFiles(folder.files)));
      const bytes = new TextEncoder().encode(editor.value);
      return base64(zip([{ name: entryFile(runtime(), handler()), bytes }]));
    },
  };
}

/** KEY=VALUE lines as SCF's `Environment`. */
function environment(text) {
  const variables = text.split('\n').map((l) => l.trim()).filter(Boolean).map((line) => {
    const at = line.indexOf('=');
    return at < 0 ? { Key: line, Value: '' } : { Key: line.slice(0, at).trim(), Value: line.slice(at + 1) };
  });
  return { Variables: variables };
}

export async function create(view) {
  if (!TEMPLATES.python) TEMPLATES.python = await (await fetch('/console/templates/hello-clb.py')).text();
  const names = await namespaces();
  const note = notice();
  const name = h('input', { name: 'FunctionName', required: true, placeholder: 'hello-clb' });
  const namespace = select('Namespace', names.map((n) => [n, n]), currentNamespace);
  const runtime = select('Runtime', RUNTIMES.map((r) => [r, r]), 'Python3.9');
  const handler = h('input', { name: 'Handler', value: 'index.main_handler' });
  const memory = select('MemorySize', MEMORY.map((m) => [String(m), `${m} MB`]), '128');
  const timeout = h('input', { name: 'Timeout', type: 'number', min: 1, max: 900, value: 3 });
  const env = h('textarea', { name: 'Environment', rows: 3, placeholder: 'KEY=value, one per line' });
  const code = codeInputs(() => runtime.value, () => handler.value, TEMPLATES.python);
  runtime.addEventListener('change', () => {
    const editor = code.elements[1];
    if (editor.value === TEMPLATES.python || editor.value === TEMPLATES.node) {
      editor.value = runtime.value.startsWith('Nodejs') ? TEMPLATES.node : TEMPLATES.python;
    }
    code.update();
  });
  handler.addEventListener('input', code.update);
  const button = h('button', { type: 'submit' }, 'Create and deploy');
  const form = h('form', {
    onsubmit: (event) => {
      event.preventDefault();
      act(button, note, async () => {
        await scf('CreateFunction', {
          FunctionName: name.value.trim(),
          Namespace: namespace.value,
          Runtime: runtime.value,
          Handler: handler.value.trim(),
          MemorySize: Number(memory.value),
          Timeout: Number(timeout.value),
          Environment: environment(env.value),
          Code: { ZipFile: await code.package() },
        });
        currentNamespace = namespace.value;
        location.hash = functionHref(namespace.value, name.value.trim());
      });
    },
  },
  h('div', { class: 'panel' }, h('div', { class: 'grid-form' },
    h('div', { class: 'row' }, field('Name', name), field('Namespace', namespace), field('Runtime', runtime), field('Handler', handler)),
    h('div', { class: 'row' }, field('Memory', memory), field('Timeout (s)', timeout)),
    field('Environment variables', env))),
  h('h2', {}, 'Code'),
  code.elements,
  h('div', { class: 'row' }, button), note);
  show(view, heading('Create function', h('a', { class: 'btn secondary', href: '#/functions' }, 'Cancel')), form);
  name.focus();
}

const TABS = [['code', 'Code'], ['test', 'Test'], ['versions', 'Versions and aliases'], ['logs', 'Logs'],
  ['triggers', 'Trigger Management'], ['monitor', 'Monitoring']];

export async function detail(view, ns, name, tab) {
  const fn = await scf('GetFunction', { FunctionName: name, Namespace: ns, ShowCode: 'TRUE' });
  const note = notice();
  const remove = h('button', { class: 'danger', type: 'button' }, 'Delete');
  remove.addEventListener('click', () => act(remove, note, async () => {
    if (!confirm(`Delete function ${name}? Its CLB triggers go with it.`)) return;
    await scf('DeleteFunction', { FunctionName: name, Namespace: ns });
    location.hash = '#/functions';
  }));
  const body = h('section', { 'aria-label': TABS.find(([k]) => k === tab)?.[1] || '' });
  show(view,
    heading(name, remove),
    h('p', { class: 'muted' }, `${ns} · ${fn.Runtime} · ${fn.MemorySize} MB · ${fn.Timeout} s · `,
      h('span', { class: 'status good' }, fn.Status)),
    note,
    tabs(TABS, tab, (key) => functionHref(ns, name, key)),
    body);
  const pages = { code: codePage, test: testPage, versions: versionsPage, logs: logsPage, triggers: triggersPage, monitor: monitorPage };
  await (pages[tab] || codePage)(body, ns, name, fn);
}

async function codePage(body, ns, name, fn) {
  const deployNote = notice();
  const saveNote = notice();
  const handler = h('input', { name: 'Handler', value: fn.Handler });
  const memory = select('MemorySize', MEMORY.map((m) => [String(m), `${m} MB`]), String(fn.MemorySize));
  const timeout = h('input', { name: 'Timeout', type: 'number', min: 1, max: 900, value: fn.Timeout });
  const env = h('textarea', { name: 'Environment', rows: 3 });
  env.value = (fn.Environment?.Variables || []).map((v) => `${v.Key}=${v.Value}`).join('\n');
  const description = h('input', { name: 'Description', value: fn.Description || '' });
  const code = codeInputs(() => fn.Runtime, () => handler.value, fn.CodeInfo || '');
  handler.addEventListener('input', code.update);
  const deploy = h('button', { type: 'button' }, 'Deploy');
  deploy.addEventListener('click', () => act(deploy, deployNote, async () => {
    if (!code.uploaded() && !confirm('Replace the function\'s package with the file in the editor?')) return;
    await scf('UpdateFunctionCode', { FunctionName: name, Namespace: ns, Handler: handler.value.trim(), ZipFile: await code.package() });
    deployNote.ok('Deployed: new requests run the new code.');
  }));
  const save = h('button', { type: 'button', class: 'secondary' }, 'Save configuration');
  save.addEventListener('click', () => act(save, saveNote, async () => {
    await scf('UpdateFunctionConfiguration', {
      FunctionName: name, Namespace: ns, MemorySize: Number(memory.value), Timeout: Number(timeout.value),
      Description: description.value, Environment: environment(env.value),
    });
    saveNote.ok('Configuration saved.');
  }));
  show(body,
    h('div', { class: 'panel' },
      h('div', { class: 'row' }, field('Handler', handler)),
      code.elements,
      h('div', { class: 'row' }, deploy),
      deployNote),
    h('h2', {}, 'Configuration'),
    h('div', { class: 'panel' },
      h('div', { class: 'row' }, field('Memory', memory), field('Timeout (s)', timeout), field('Description', description)),
      field('Environment variables', env),
      h('div', { class: 'row' }, save),
      saveNote));
}

/**
 * A CLB event for testing, as a function receives it from a listener over HTTP/1.1 (contract 0.1): header names in
 * title case as fnlb spells them (`Host`, `User-Agent`; docs/decisions/0001-event-header-case.md), the balancer's
 * own headers included, so a handler reading `event['headers']['Host']` works the same here and behind a listener.
 */
function clbEvent() {
  return {
    headers: {
      Host: '127.0.0.1:8080',
      'User-Agent': 'fnlb-console',
      Accept: '*/*',
      'X-Stgw-Time': (Date.now() / 1000).toFixed(3),
      'X-Client-Proto': 'http',
      'X-Forwarded-Proto': 'http',
      'X-Client-Proto-Ver': 'HTTP/1.1',
      'X-Real-IP': '127.0.0.1',
      'X-Forwarded-For': '127.0.0.1',
    },
    payload: '',
    isBase64Encoded: 'false',
    httpMethod: 'GET',
    path: '/',
    queryString: {},
    requestContext: {
      requestId: 'console-test', sourceIp: '127.0.0.1', loadBalancerId: 'lb-console', listenerId: 'lbl-console',
      locationId: 'loc-console', vip: '127.0.0.1', vport: 8080, protocol: 'HTTP',
    },
  };
}

async function testPage(body, ns, name) {
  const note = notice();
  const template = select('template', [['clb', 'CLB event'], ['empty', 'Empty event']], 'clb');
  const event = h('textarea', { class: 'code', 'aria-label': 'Event' });
  const fill = () => { event.value = JSON.stringify(template.value === 'clb' ? clbEvent() : {}, null, 2); };
  fill();
  template.addEventListener('change', fill);
  const output = h('div');
  const run = h('button', { type: 'button' }, 'Test');
  run.addEventListener('click', () => act(run, note, async () => {
    let parsed;
    try {
      parsed = JSON.parse(event.value);
    } catch (error) {
      throw new Error(`The event is not JSON: ${error.message}`);
    }
    const answer = await scf('Invoke', {
      FunctionName: name, Namespace: ns, InvocationType: 'RequestResponse', LogType: 'Tail', ClientContext: JSON.stringify(parsed),
    });
    const r = answer.Result;
    show(output,
      h('h2', {}, r.InvokeResult === 0 ? 'Succeeded' : 'Failed'),
      h('p', {}, `Request ${r.FunctionRequestId} · ${r.Duration} ms · ${(r.MemUsage / 1048576).toFixed(1)} MB`),
      h('h2', {}, 'Result'), h('pre', { class: 'result' }, r.InvokeResult === 0 ? r.RetMsg : r.ErrMsg),
      h('h2', {}, 'Log'), h('pre', { class: 'log' }, r.Log || ''));
  }));
  show(body, h('div', { class: 'row' }, field('Template', template), run), note, event, output);
}

async function versionsPage(body, ns, name) {
  const publishNote = notice();
  const aliasNote = notice();
  const [versions, aliases] = await Promise.all([
    scf('ListVersionByFunction', { FunctionName: name, Namespace: ns, Limit: 100 }),
    scf('ListAliases', { FunctionName: name, Namespace: ns, Limit: 100 }),
  ]);
  const publish = h('button', { type: 'button' }, 'Publish version');
  const description = h('input', { name: 'Description', placeholder: 'What changed' });
  publish.addEventListener('click', () => act(publish, publishNote, async () => {
    await scf('PublishVersion', { FunctionName: name, Namespace: ns, Description: description.value });
    await versionsPage(body, ns, name);
  }));
  const aliasName = h('input', { name: 'Name', placeholder: 'prod' });
  const numbers = (versions.Versions || []).map((v) => v.Version);
  const aliasVersion = select('FunctionVersion', numbers.map((v) => [v, v]), numbers[numbers.length - 1]);
  const addAlias = h('button', { type: 'button' }, 'Create alias');
  addAlias.addEventListener('click', () => act(addAlias, aliasNote, async () => {
    await scf('CreateAlias', { FunctionName: name, Namespace: ns, Name: aliasName.value.trim(), FunctionVersion: aliasVersion.value });
    await versionsPage(body, ns, name);
  }));
  show(body,
    h('h2', {}, 'Versions'),
    table([['Version', (v) => v.Version], ['Description', (v) => v.Description || ''], ['Published', (v) => v.AddTime || '']],
      versions.Versions || []),
    h('div', { class: 'panel' }, h('div', { class: 'row' }, field('Description', description), publish), publishNote),
    h('h2', {}, 'Aliases'),
    table([['Alias', (a) => a.Name], ['Version', (a) => a.FunctionVersion],
      ['Weights', (a) => (a.RoutingConfig?.AdditionalVersionWeights || []).map((w) => `${w.Version}: ${w.Weight}`).join(', ')]],
    aliases.Aliases || []),
    h('div', { class: 'panel' },
      h('div', { class: 'row' }, field('Alias name', aliasName), field('Version', aliasVersion), addAlias), aliasNote));
}

async function logsPage(body, ns, name) {
  const note = notice();
  const requestId = h('input', { type: 'search', placeholder: 'Request id' });
  const output = h('div');
  const search = h('button', { type: 'submit' }, 'Search');
  const load = () => act(search, note, async () => {
    const params = { FunctionName: name, Namespace: ns, Limit: 50, Order: 'desc', OrderBy: 'start_time' };
    if (requestId.value.trim()) params.FunctionRequestId = requestId.value.trim();
    const logs = await scf('GetFunctionLogs', params);
    show(output, table([
      ['Time', (l) => l.StartTime],
      ['Request', (l) => h('code', {}, l.RequestId)],
      ['Result', (l) => h('span', { class: `status ${l.RetCode === 0 ? 'good' : 'bad'}` }, l.RetCode === 0 ? 'OK' : `Error ${l.RetCode}`)],
      ['Duration', (l) => `${l.Duration} ms`],
      // In a cluster, the node that ran the invocation.
      ...((logs.Data || []).some((l) => l.Source) ? [['Node', (l) => l.Source]] : []),
      ['Log', (l) => h('pre', { class: 'log' }, l.Log)],
    ], logs.Data || [], 'No invocations logged.'));
  });
  show(body, h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); load(); } }, field('Request id', requestId), search), note, output);
  await load();
}

/** Trigger Management; `done` says how the last removal went (the page is drawn again after it). */
async function triggersPage(body, ns, name, _fn, done = '') {
  const listNote = notice();
  const createNote = notice();
  const listed = await scf('ListTriggers', { FunctionName: name, Namespace: ns, Limit: 100 });
  const triggers = (listed.Triggers || []).filter((t) => t.Type === 'clb').map((t) => ({ ...t, desc: JSON.parse(t.TriggerDesc) }));
  // Create a CLB trigger from here: a load balancer, one of its HTTP/HTTPS listeners, a domain and URL.
  const balancers = await all('clb', 'DescribeLoadBalancers', {}, 'LoadBalancerSet');
  const lb = select('lb', balancers.map((b) => [b.LoadBalancerId, `${b.LoadBalancerName} (${b.LoadBalancerId})`]), balancers[0]?.LoadBalancerId);
  const listener = h('select', { name: 'listener' });
  const domain = h('input', { required: true });
  const loadListeners = async () => {
    listener.replaceChildren();
    if (!lb.value) return;
    // A rule's domain defaults to the VIP, as the first rule of a listener does.
    domain.value = balancers.find((b) => b.LoadBalancerId === lb.value)?.LoadBalancerVips?.[0] || '';
    const described = await clb('DescribeListeners', { LoadBalancerId: lb.value });
    // Every listener is offered: the API says why one cannot take a function (a TCP listener, say).
    for (const l of described.Listeners) {
      listener.append(h('option', { value: l.ListenerId }, `${l.Protocol}:${l.Port} (${l.ListenerId})`));
    }
  };
  lb.addEventListener('change', loadListeners);
  await loadListeners();
  const url = h('input', { value: '/' });
  const add = h('button', { type: 'submit' }, 'Create CLB trigger');
  const form = h('form', {
    class: 'panel',
    onsubmit: (event) => {
      event.preventDefault();
      act(add, createNote, async () => {
        const desc = { loadBalanceId: lb.value, listenerId: listener.value, domain: domain.value.trim(), url: url.value.trim() };
        await scf('CreateTrigger', {
          FunctionName: name, Namespace: ns, Type: 'clb', TriggerName: `clb-${Date.now()}`, TriggerDesc: JSON.stringify(desc),
        });
        await triggersPage(body, ns, name);
      });
    },
  }, h('div', { class: 'row' }, field('Load balancer', lb), field('Listener', listener), field('Domain', domain), field('URL', url), add), createNote);
  // Removing a trigger unbinds the function from its rule; the rule stays on its load balancer.
  const remove = (t) => {
    const button = h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove trigger ${t.desc.accessPath}` }, 'Remove');
    button.addEventListener('click', () => act(button, listNote, async () => {
      if (!confirm(`Remove the CLB trigger ${t.desc.accessPath}? Its rule stays, with nothing bound to it.`)) return;
      await scf('DeleteTrigger', {
        FunctionName: name, Namespace: ns, Type: 'clb', TriggerName: t.TriggerName, TriggerDesc: t.TriggerDesc, Qualifier: t.Qualifier,
      });
      await triggersPage(body, ns, name, null, `Removed the trigger ${t.desc.accessPath}; its rule stays on ${t.desc.loadBalanceId}.`);
    }));
    return button;
  };
  show(body,
    h('h2', {}, 'CLB triggers'),
    table([
      ['Access path', (t) => h('a', { href: t.desc.accessPath, target: '_blank', rel: 'noopener', class: 'access-path' }, t.desc.accessPath)],
      ['Load balancer', (t) => h('a', { href: `#/balancers/${t.desc.loadBalanceId}` }, t.desc.loadBalanceId)],
      ['Listener', (t) => `${t.desc.protocol}:${t.desc.port}`],
      ['Rule', (t) => `${t.desc.domain}${t.desc.url}`],
      ['Qualifier', (t) => t.Qualifier],
      ['', remove],
    ], triggers, 'No CLB trigger yet: bind the function to a rule, here or from its load balancer.'),
    listNote,
    h('h2', {}, 'Create a CLB trigger'),
    balancers.length === 0 ? h('p', { class: 'empty' }, 'Create a load balancer first.') : form);
  if (done) listNote.ok(done);
}

async function monitorPage(body, ns, name) {
  await functionCharts(body, ns, name, session.region);
}
