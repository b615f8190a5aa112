// Load balancers: the list, creation and deletion; each instance's listeners (HTTP, HTTPS with a certificate,
// TCP, UDP…), their rules, what each rule forwards to (a function or server targets with weights) and the
// targets' health.
import { all, clb } from './api.js';
import { act, field, h, heading, notice, select, show, table } from './ui.js';
import { ruleCharts } from './charts.js';

const balancerHref = (id) => `#/balancers/${encodeURIComponent(id)}`;

export async function list(view) {
  const balancers = await all('clb', 'DescribeLoadBalancers', {}, 'LoadBalancerSet');
  const note = notice();
  const name = h('input', { name: 'LoadBalancerName', placeholder: 'my-clb' });
  const vip = h('input', { name: 'Vip', placeholder: 'first free 127.x address' });
  const create = h('button', { type: 'submit' }, 'Create load balancer');
  const form = h('form', {
    class: 'panel',
    onsubmit: (event) => {
      event.preventDefault();
      act(create, note, async () => {
        const params = { LoadBalancerType: 'OPEN' };
        if (name.value.trim()) params.LoadBalancerName = name.value.trim();
        if (vip.value.trim()) params.Vip = vip.value.trim();
        const created = await clb('CreateLoadBalancer', params);
        location.hash = balancerHref(created.LoadBalancerIds[0]);
      });
    },
  }, h('div', { class: 'row' }, field('Name', name), field('VIP', vip, 'An address of this host.'), create), note);
  const listNote = notice();
  const remove = (lb) => {
    const button = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${lb.LoadBalancerName}` }, 'Delete');
    button.addEventListener('click', () => act(button, listNote, async () => {
      if (!confirm(`Delete ${lb.LoadBalancerName} with its listeners and rules?`)) return;
      await clb('DeleteLoadBalancer', { LoadBalancerIds: [lb.LoadBalancerId] });
      await list(view);
    }));
    return button;
  };
  show(view,
    heading('Load balancers'),
    form,
    listNote,
    table([
      ['Name', (lb) => h('a', { href: balancerHref(lb.LoadBalancerId) }, lb.LoadBalancerName)],
      ['ID', (lb) => h('code', {}, lb.LoadBalancerId)],
      ['VIP', (lb) => (lb.LoadBalancerVips || []).join(', ')],
      ['Created', (lb) => lb.CreateTime],
      ['', remove],
    ], balancers, 'No load balancers yet.'));
}

/** Event functions of the region, by namespace: the only ones a rule may be bound to. */
async function bindableFunctions() {
  const namespaces = await all('scf', 'ListNamespaces', {}, 'Namespaces');
  const found = [];
  for (const ns of namespaces) {
    const functions = await all('scf', 'ListFunctions', { Namespace: ns.Name }, 'Functions');
    for (const f of functions.filter((x) => x.Type !== 'HTTP')) found.push({ namespace: ns.Name, name: f.FunctionName });
  }
  return found;
}

export async function detail(view, id) {
  const described = await clb('DescribeLoadBalancers', { LoadBalancerIds: [id] });
  const lb = described.LoadBalancerSet[0];
  if (!lb) {
    show(view, heading('Load balancer not found'), h('a', { href: '#/balancers' }, 'All load balancers'));
    return;
  }
  const [listeners, targets, health, functions] = await Promise.all([
    clb('DescribeListeners', { LoadBalancerId: id }),
    clb('DescribeTargets', { LoadBalancerId: id }),
    clb('DescribeTargetHealth', { LoadBalancerIds: [id] }),
    bindableFunctions(),
  ]);
  const reload = () => detail(view, id);
  const targetsOf = (listenerId) => (targets.Listeners || []).find((l) => l.ListenerId === listenerId) || {};
  const healthOf = (listenerId, locationId, ip, port) => {
    const l = (health.LoadBalancers?.[0]?.Listeners || []).find((x) => x.ListenerId === listenerId);
    const rules = l?.Rules || [];
    const rule = locationId ? rules.find((r) => r.LocationId === locationId) : rules[0];
    const t = (rule?.Targets || []).find((x) => x.IP === ip && x.Port === port);
    return t ? t.HealthStatusDetail : 'Unknown';
  };

  const sections = (listeners.Listeners || []).map((l) => listenerPanel(l, {
    id, lb, reload, functions, targets: targetsOf(l.ListenerId), healthOf,
  }));
  show(view,
    heading(lb.LoadBalancerName, h('a', { class: 'btn secondary', href: '#/balancers' }, 'All load balancers')),
    h('p', { class: 'muted' }, `${lb.LoadBalancerId} · VIP ${(lb.LoadBalancerVips || []).join(', ')}`),
    h('h2', {}, 'Listeners'),
    sections.length ? sections : h('p', { class: 'empty' }, 'No listeners yet.'),
    h('h2', {}, 'Create a listener'),
    listenerForm(id, reload));
}

/** The protocols whose listeners terminate TLS, and so take a server certificate. */
const TLS_PROTOCOLS = ['HTTPS', 'TCP_SSL'];

function listenerForm(id, reload) {
  const note = notice();
  const protocol = select('Protocol', ['HTTP', 'HTTPS', 'TCP', 'UDP', 'TCP_SSL'].map((p) => [p, p]), 'HTTP');
  const port = h('input', { name: 'Ports', type: 'number', min: 1, max: 65535, placeholder: '8080', required: true });
  const name = h('input', { name: 'ListenerNames', placeholder: 'optional' });
  const certName = h('input', { placeholder: 'site' });
  const certFile = h('input', { type: 'file', accept: '.crt,.pem' });
  const keyFile = h('input', { type: 'file', accept: '.key,.pem' });
  // Shown, and required, only for the protocols that take a certificate.
  const tls = h('fieldset', { class: 'row tls' },
    h('legend', {}, 'Server certificate'),
    field('Certificate name', certName), field('Certificate (PEM)', certFile), field('Private key (PEM)', keyFile));
  const showTls = () => {
    tls.hidden = !TLS_PROTOCOLS.includes(protocol.value);
    certFile.required = !tls.hidden;
    keyFile.required = !tls.hidden;
  };
  showTls();
  protocol.addEventListener('change', showTls);
  const create = h('button', { type: 'submit' }, 'Create listener');
  return h('form', {
    class: 'panel',
    onsubmit: (event) => {
      event.preventDefault();
      act(create, note, async () => {
        const params = { LoadBalancerId: id, Ports: [Number(port.value)], Protocol: protocol.value };
        if (name.value.trim()) params.ListenerNames = [name.value.trim()];
        if (!tls.hidden) {
          const read = async (input, what) => {
            if (input.files.length === 0) throw new Error(`Choose the ${what} file.`);
            return input.files[0].text();
          };
          params.Certificate = {
            SSLMode: 'UNIDIRECTIONAL',
            CertName: certName.value.trim() || 'site',
            CertContent: await read(certFile, 'certificate'),
            CertKey: await read(keyFile, 'private key'),
          };
        }
        await clb('CreateListener', params);
        await reload();
      });
    },
  }, h('div', { class: 'row' }, field('Protocol', protocol), field('Port', port), field('Name', name)), tls, h('div', { class: 'row' }, create), note);
}

function listenerPanel(l, ctx) {
  const { id, reload } = ctx;
  const note = notice();
  const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete listener ${l.Protocol}:${l.Port}` }, 'Delete listener');
  remove.addEventListener('click', () => act(remove, note, async () => {
    if (!confirm(`Delete listener ${l.Protocol}:${l.Port}?`)) return;
    await clb('DeleteListener', { LoadBalancerId: id, ListenerId: l.ListenerId });
    await reload();
  }));
  const layer7 = l.Protocol === 'HTTP' || l.Protocol === 'HTTPS';
  return h('section', { class: 'panel', 'aria-label': `Listener ${l.Protocol}:${l.Port}` },
    h('div', { class: 'page-head' }, h('h3', {}, `${l.Protocol}:${l.Port}`, ' ', h('code', { class: 'muted' }, l.ListenerId)), remove),
    note,
    layer7 ? rulesOf(l, { ...ctx, note }) : serversOf(l, null, ctx.targets.Targets || [], ctx));
}

/**
 * The URL a browser opens to reach a rule, as fnlb gives it for a CLB trigger (`accessPath`, the CLI's and the
 * example's; docs/decisions/0003-access-path.md): the rule's domain when it is a plain name other than the
 * listener's default, otherwise the VIP; the port always; the URL without its match operator (`=`, `^~`), or `/`
 * for a regular expression.
 */
function accessPath(lb, listener, rule) {
  const scheme = listener.Protocol === 'HTTPS' ? 'https' : 'http';
  const vip = (lb.LoadBalancerVips || [])[0] || '';
  const pattern = rule.Domain.startsWith('~') || rule.Domain.startsWith('*') || rule.Domain.endsWith('*');
  const host = !pattern && !rule.DefaultServer ? rule.Domain : vip.includes(':') ? `[${vip}]` : vip;
  const url = rule.Url;
  let path = url;
  if (url.startsWith('^~')) path = url.slice(2).trimStart();
  else if (url.startsWith('~')) path = '/';
  else if (url.startsWith('=')) path = url.slice(1).trimStart();
  return `${scheme}://${host}:${listener.Port}${path}`;
}

function rulesOf(l, ctx) {
  const { id, note, reload } = ctx;
  const formNote = notice();
  const rules = l.Rules || [];
  const assigned = (rule) => (ctx.targets.Rules || []).find((r) => r.LocationId === rule.LocationId) || {};
  const domain = h('input', { name: 'Domain', placeholder: rules.length ? 'the default domain' : 'the VIP' });
  const url = h('input', { name: 'Url', value: '/' });
  const add = h('button', { type: 'submit' }, 'Create rule');
  const form = h('form', {
    class: 'row',
    onsubmit: (event) => {
      event.preventDefault();
      act(add, formNote, async () => {
        const rule = { Url: url.value.trim() };
        if (domain.value.trim()) rule.Domain = domain.value.trim();
        await clb('CreateRule', { LoadBalancerId: id, ListenerId: l.ListenerId, Rules: [rule] });
        await reload();
      });
    },
  }, h('div', { class: 'row' }, field('Domain', domain), field('URL', url), add), formNote);
  return [
    table([
      ['Access path', (r) => {
        const path = accessPath(ctx.lb, l, r);
        return h('a', { href: path, target: '_blank', rel: 'noopener', class: 'rule-path' }, path);
      }],
      ['Domain', (r) => r.Domain + (r.DefaultServer ? ' (default)' : '')],
      ['URL', (r) => r.Url],
      ['Forwards to', (r) => forwardsTo(l, r, assigned(r), ctx)],
      ['', (r) => {
        const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete rule ${r.Domain}${r.Url}` }, 'Delete rule');
        remove.addEventListener('click', () => act(remove, note, async () => {
          await clb('DeleteRule', { LoadBalancerId: id, ListenerId: l.ListenerId, LocationIds: [r.LocationId] });
          await reload();
        }));
        return h('div', { class: 'actions' }, remove, ruleCharts(id, l.ListenerId, r.LocationId));
      }],
    ], rules, 'No rules yet.'),
    form,
  ];
}

/** What a rule forwards to, with the controls to change it. */
function forwardsTo(l, rule, assigned, ctx) {
  const { id, reload } = ctx;
  const note = notice();
  const bound = (assigned.FunctionTargets || [])[0];
  const ruleRef = { LoadBalancerId: id, ListenerId: l.ListenerId, LocationId: rule.LocationId };
  if (bound) {
    const f = bound.Function;
    const unbind = h('button', { type: 'button', class: 'secondary' }, 'Unbind');
    unbind.addEventListener('click', () => act(unbind, note, async () => {
      await clb('DeregisterFunctionTargets', { ...ruleRef, FunctionTargets: [{ Function: f }] });
      await reload();
    }));
    return h('div', {}, 'Function ', h('a', { href: `#/functions/${encodeURIComponent(f.FunctionNamespace)}/${encodeURIComponent(f.FunctionName)}/triggers` }, f.FunctionName),
      ` (${f.FunctionQualifier}) `, unbind, note);
  }
  const servers = assigned.Targets || [];
  const parts = [];
  if (servers.length === 0) {
    const fn = select('function', ctx.functions.map((x) => [`${x.namespace}/${x.name}`, `${x.namespace}/${x.name}`]));
    const bind = h('button', { type: 'button' }, 'Bind function');
    bind.addEventListener('click', () => act(bind, note, async () => {
      const [namespace, name] = fn.value.split('/');
      await clb('RegisterFunctionTargets', {
        ...ruleRef,
        FunctionTargets: [{ Function: { FunctionNamespace: namespace, FunctionName: name, FunctionQualifier: '$LATEST' }, Weight: 10 }],
      });
      await reload();
    }));
    if (ctx.functions.length > 0) parts.push(h('div', { class: 'row' }, field('Function', fn), bind), note, h('p', { class: 'muted' }, 'or servers:'));
  }
  parts.push(serversOf(l, rule, servers, ctx));
  return h('div', {}, parts);
}

/** Server targets of a rule (or of a layer-4 listener when `rule` is null): weights, health, add and remove. */
function serversOf(l, rule, servers, ctx) {
  const { id, reload } = ctx;
  const note = notice();
  const ref = { LoadBalancerId: id, ListenerId: l.ListenerId };
  if (rule) ref.LocationId = rule.LocationId;
  const ip = h('input', { placeholder: '127.0.0.1', size: 12 });
  const port = h('input', { type: 'number', min: 1, max: 65535, placeholder: 'port' });
  const weight = h('input', { type: 'number', min: 0, max: 100, value: 10 });
  const add = h('button', { type: 'submit' }, 'Add server');
  const form = h('form', {
    class: 'row',
    onsubmit: (event) => {
      event.preventDefault();
      act(add, note, async () => {
        await clb('RegisterTargets', { ...ref, Targets: [{ EniIp: ip.value.trim(), Port: Number(port.value), Weight: Number(weight.value) }] });
        await reload();
      });
    },
  }, h('div', { class: 'row' }, field('Server IP', ip), field('Port', port), field('Weight', weight), add), note);
  const rows = servers.map((t) => ({ ip: t.PrivateIpAddresses[0], port: t.Port, weight: t.Weight }));
  return h('div', {},
    rows.length ? table([
      ['Server', (t) => `${t.ip}:${t.port}`],
      ['Weight', (t) => String(t.weight)],
      ['Health', (t) => {
        const state = ctx.healthOf(l.ListenerId, rule && rule.LocationId, t.ip, t.port);
        return h('span', { class: `status ${state === 'Alive' ? 'good' : state === 'Dead' ? 'bad' : ''}` }, state);
      }],
      ['', (t) => {
        const remove = h('button', { type: 'button', class: 'secondary' }, 'Remove');
        remove.addEventListener('click', () => act(remove, note, async () => {
          await clb('DeregisterTargets', { ...ref, Targets: [{ EniIp: t.ip, Port: t.port }] });
          await reload();
        }));
        return remove;
      }],
    ], rows) : null,
    form);
}

