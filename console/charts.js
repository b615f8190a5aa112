// Monitoring at a glance: the last hour, minute by minute, from the data fnlb keeps itself
// (DescribeFunctionMetrics, DescribeRuleMetrics), drawn as SVG line charts.
import { clb, scf } from './api.js';
import { h, notice, show } from './ui.js';

const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#0052d9', '#c62828', '#1a7f37', '#e37318', '#7b1fa2'];

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

/** A line chart of `series` ([label, values]) over `times`; `unit` follows the values. */
export function lineChart(title, times, series, unit = '') {
  const width = 400;
  const height = 170;
  const pad = { left: 56, right: 8, top: 10, bottom: 22 };
  const max = Math.max(1, ...series.flatMap(([, values]) => values));
  const x = (i) => pad.left + (i * (width - pad.left - pad.right)) / Math.max(1, times.length - 1);
  const y = (v) => height - pad.bottom - (v * (height - pad.top - pad.bottom)) / max;
  const round = (v) => +v.toFixed(1);
  const totals = series.map(([label, values]) => `${label}: peak ${round(Math.max(0, ...values))}${unit}`).join(', ');
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${title}, last hour. ${totals}` });
  chart.append(svg('line', { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), stroke: '#d9dee4' }));
  chart.append(svg('line', { x1: pad.left, y1: y(max), x2: width - pad.right, y2: y(max), stroke: '#eef1f4' }));
  const label = (text, lx, ly, anchor = 'end') => {
    const t = svg('text', { x: lx, y: ly, 'font-size': 12, fill: '#5b6876', 'text-anchor': anchor });
    t.textContent = text;
    chart.append(t);
  };
  label(`${round(max)}${unit}`, pad.left - 4, y(max) + 4);
  label('0', pad.left - 4, y(0) + 4);
  if (times.length) {
    label(times[0].slice(11, 16), pad.left, height - 4, 'start');
    label(times[times.length - 1].slice(11, 16), width - pad.right, height - 4);
  }
  series.forEach(([, values], n) => {
    const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    chart.append(svg('polyline', { points, fill: 'none', stroke: COLORS[n % COLORS.length], 'stroke-width': 2 }));
  });
  const legend = h('div', { class: 'legend' },
    series.map(([name], n) => h('span', { class: `c${n % COLORS.length}` }, `■ ${name} `)));
  return h('div', { class: 'chart panel' }, h('h3', {}, title), chart, legend);
}

export async function functionCharts(body, ns, name) {
  const answer = await scf('DescribeFunctionMetrics', { FunctionName: name, Namespace: ns });
  const m = answer.Metrics;
  const times = m.map((p) => p.Time);
  const total = (key) => m.reduce((n, p) => n + p[key], 0);
  show(body,
    h('p', { class: 'muted' }, `Last hour: ${total('Invocations')} invocations, ${total('Errors')} errors.`),
    h('div', { class: 'charts' },
      lineChart('Invocations and errors', times, [['Invocations', m.map((p) => p.Invocations)], ['Errors', m.map((p) => p.Errors)]]),
      lineChart('Duration', times, [['p50', m.map((p) => p.DurationP50)], ['p99', m.map((p) => p.DurationP99)]], ' ms'),
      lineChart('Concurrent executions', times, [['Instances busy', m.map((p) => p.ConcurrentExecutions)]])));
}

/** A rule's requests and status codes, loaded when opened. */
export function ruleCharts(id, listenerId, locationId) {
  const body = h('div');
  const note = notice();
  const details = h('details', {}, h('summary', {}, 'Requests'), note, body);
  details.addEventListener('toggle', async () => {
    if (!details.open) return;
    try {
      const answer = await clb('DescribeRuleMetrics', { LoadBalancerId: id, ListenerId: listenerId, LocationId: locationId });
      const m = answer.Metrics;
      const times = m.map((p) => p.Time);
      show(body, lineChart('Requests by status', times, [
        ['Requests', m.map((p) => p.Requests)],
        ['2xx', m.map((p) => p.Status2xx)],
        ['3xx', m.map((p) => p.Status3xx)],
        ['4xx', m.map((p) => p.Status4xx)],
        ['5xx', m.map((p) => p.Status5xx)],
      ]));
    } catch (error) {
      note.error(error);
    }
  });
  return details;
}
