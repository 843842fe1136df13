// Shared helpers of the dashboard pages: JSON fetching, safe DOM building, number formatting,
// mixer families and colours, live polling.
'use strict';

const MX = (() => {
  async function getJSON(url) {
    const response = await fetch(url, { headers: { accept: 'application/json' } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  // el('a', {href: ..., class: ...}, 'text', child): strings become text nodes, never HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key === 'style') Object.assign(node.style, value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  // The one number format of every page: up to 4 significant digits; from 10,000 on an SI
  // suffix with 3 (67.1k, 168k, 1.8M, 140G, as the plots' axes with exponentformat 'SI');
  // below 0.001 an exponent (2.5e-4).
  const SI = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
  function fmt(value) {
    if (value === null || value === undefined) return '—';
    if (typeof value !== 'number') return String(value);
    if (!Number.isFinite(value)) return String(value);
    const magnitude = Math.abs(value);
    if (magnitude >= 1e4) {
      let power = Math.min(SI.length - 1, Math.floor(Math.log10(magnitude) / 3));
      let scaled = Number((value / 10 ** (3 * power)).toPrecision(3));
      if (Math.abs(scaled) >= 1000 && power < SI.length - 1) { power += 1; scaled /= 1000; }
      return `${scaled}${SI[power]}`;
    }
    if (magnitude !== 0 && magnitude < 1e-3) return value.toExponential(1).replace('.0e', 'e');
    return String(Number(value.toPrecision(4)));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    if (seconds < 90) return `${seconds.toFixed(0)} s`;
    if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function badge(text, kind) {
    return el('span', { class: `badge ${kind || text}` }, text);
  }

  // Primitive families by name; the colours of the architecture strip and the legend.
  const FAMILY_RULES = [
    [/parallel/, 'parallel'], [/^none$|identity/, 'none'], [/delta/, 'delta'],
    [/mamba|ssm|^s4|^s5|lru|griffin/, 'ssm'], [/hyena|conv/, 'conv'],
    [/linear|retention|retnet|gla|rwkv|based/, 'linear'], [/attention|attn|mha|gqa|mqa|mla/, 'attention'],
    [/moe|expert/, 'moe'], [/glu/, 'glu'], [/mlp|ffn/, 'mlp'],
  ];
  const FAMILY_LABELS = {
    attention: 'attention', linear: 'linear attention', delta: 'delta rule', ssm: 'state space',
    conv: 'convolution', moe: 'mixture of experts', glu: 'gated MLP', mlp: 'MLP', other: 'other',
  };
  function family(type) {
    const rule = FAMILY_RULES.find(([pattern]) => pattern.test(type));
    return rule ? rule[1] : 'other';
  }
  function familyColor(fam) {
    return getComputedStyle(document.documentElement).getPropertyValue(`--fam-${fam}`).trim();
  }
  // A mixer's legend key, colour and label. Kinds the dashboard does not know (users' plugin
  // primitives, docs/primitives.md) each get their own stable colour, hashed from the name.
  function mixerKey(type) {
    const fam = family(type);
    return fam === 'other' ? `plugin:${type}` : fam;
  }
  function mixerColor(type) {
    const key = mixerKey(type);
    if (!key.startsWith('plugin:')) return familyColor(key);
    let hash = 0;
    for (const ch of type) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
    return `hsl(${hash % 360}, 55%, 42%)`;
  }
  function keyLabel(key) {
    return key.startsWith('plugin:') ? `${key.slice(7)} (your primitive)` : FAMILY_LABELS[key] || key;
  }

  const enc = encodeURIComponent;
  const paths = {
    study: (name) => `/studies/${enc(name)}`,
    trial: (name, number) => `/studies/${enc(name)}/trials/${number}`,
    api: (name, rest) => `/api/studies/${enc(name)}${rest || ''}`,
  };

  // The page's study name and trial number, from its own URL.
  function route() {
    const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    return { study: parts[1], number: parts[3] === undefined ? null : Number(parts[3]) };
  }

  function header(crumbs) {
    const items = [el('a', { href: '/' }, 'Studies')];
    for (const [label, href] of crumbs) {
      items.push(el('span', { class: 'sep' }, '/'));
      items.push(href ? el('a', { href }, label) : el('span', {}, label));
    }
    const live = el('div', { class: 'live', id: 'live' }, el('span', { class: 'dot' }),
      el('span', { class: 'text' }, 'connecting'));
    document.body.prepend(el('header', { class: 'topbar' },
      el('a', { class: 'brand', href: '/' }, 'mixnas ', el('span', {}, 'dashboard')),
      el('nav', { class: 'crumbs' }, items), live));
  }

  function setLive(ok, text) {
    const live = document.getElementById('live');
    live.className = `live ${ok ? 'on' : 'error'}`;
    live.querySelector('.text').textContent = text;
  }

  // Call `tick` every `ms` while the tab is visible; the header shows whether it works.
  function poll(tick, ms) {
    let busy = false;
    async function run() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        await tick();
        setLive(true, `live · ${new Date().toLocaleTimeString()}`);
      } catch (error) {
        setLive(false, `offline: ${error.message}`);
      } finally {
        busy = false;
      }
    }
    setInterval(run, ms);
    return run;
  }

  // A page that shows one answer and does not poll: run `build`, then mark the page ready and
  // say when it loaded, or show why it could not.
  async function loadOnce(build) {
    try {
      await build();
      setLive(true, `as of ${new Date().toLocaleTimeString()}`);
      document.body.dataset.ready = 'true';
    } catch (error) {
      setLive(false, 'failed');
      showError(document.querySelector('main'), error);
    }
  }

  function objectiveLabel(objective) {
    return `${objective.name} (${objective.direction === 'maximize' ? 'max' : 'min'})`;
  }

  function showError(container, error) {
    container.replaceChildren(el('div', { class: 'notice error' }, error.message || String(error)));
  }

  const PLOT_CONFIG = {
    displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ['lasso2d', 'select2d', 'autoScale2d'],
  };
  const PLOT_FONT = {
    family: 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif', size: 12, color: '#1f2933',
  };

  // A d3 tick format that writes an axis of `values` as `fmt` does (plotly's default would write
  // 0.9 as '900m' on parallel coordinates): SI from 10,000 on, exponents for tiny values.
  function tickFormat(values) {
    const magnitudes = values.filter(Number.isFinite).map(Math.abs);
    const largest = Math.max(0, ...magnitudes);
    if (largest >= 1e4) return '.3~s';
    return largest !== 0 && largest < 1e-3 ? '.1~e' : '.4~r';
  }

  // A plot axis in the dashboard's style; numbers as `fmt` writes them (SI suffixes).
  function axisStyle(title, extra) {
    return Object.assign({
      title: { text: escapeHtml(title), standoff: 8 }, gridcolor: '#eef0f3', zeroline: false,
      linecolor: '#cbd2da', ticks: 'outside', tickcolor: '#cbd2da', exponentformat: 'SI',
    }, extra);
  }

  return {
    getJSON, el, escapeHtml, fmt, duration, badge, family, familyColor, FAMILY_LABELS, paths,
    mixerKey, mixerColor, keyLabel,
    route, header, setLive, poll, loadOnce, objectiveLabel, showError, PLOT_CONFIG, PLOT_FONT, axisStyle,
    tickFormat,
  };
})();
